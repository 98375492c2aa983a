"""The ticket face as a PNG, drawn with Pillow from the same template the printer gets.

    >>> img = render_face(load_template("ticket"), TicketData("T0KEN", 123, "job-1", {...}))
    >>> img.save("ticket.png")

Text uses a CJK-capable TrueType font found on the machine (``fc-list :lang=zh``; install
``fonts-noto-cjk`` where there is none); the QR code is drawn with segno, the barcode with
python-barcode. A rotated template (90/180/270) is drawn upright, then rotated: that rotated image is
also what :mod:`printer_agent.escpos_render` sends to the printer as a raster.
"""

from __future__ import annotations

import functools
import logging
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import segno
from barcode import Code128
from barcode.writer import ImageWriter
from PIL import Image, ImageDraw, ImageFont

from printer_agent.template import (
    BarcodeElement,
    CutElement,
    FeedElement,
    ImageElement,
    QrElement,
    SeparatorElement,
    Template,
    TextElement,
)

log = logging.getLogger(__name__)

FONT_DOTS = {"a": (12, 24), "b": (9, 17)}  # character cell of the printer fonts, in dots
_KNOWN_FONTS = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/opentype/noto/NotoSerifCJK-Regular.ttc",
    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
)


@dataclass(frozen=True)
class TicketData:
    """What a job contributes to a face: the token (QR) and the placeholder values."""

    token: str
    ticket_id: int
    job_id: str = ""
    fields: dict[str, str] = field(default_factory=dict)

    def values(self) -> dict[str, str]:
        return {**self.fields, "ticket_id": str(self.ticket_id), "job_id": self.job_id}


@functools.cache
def find_cjk_font() -> str | None:
    """A font file that has Chinese glyphs, or None (then Pillow's default font; CJK shows as boxes)."""
    if shutil.which("fc-list"):
        try:
            out = subprocess.run(["fc-list", ":lang=zh", "file"], capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.SubprocessError):
            out = ""
        files = sorted(line.split(":")[0].strip() for line in out.splitlines() if line.strip())
        preferred = [f for f in files if "NotoSansCJK" in f or "NotoSerifCJK" in f] + files
        if preferred:
            return preferred[0]
    for path in _KNOWN_FONTS:
        if Path(path).is_file():
            return path
    log.warning("no CJK font found (apt-get install fonts-noto-cjk): Chinese text will not show in previews")
    return None


@functools.cache
def find_latin_font() -> str | None:
    """A Latin TrueType font (``fc-match sans``): CJK fallback fonts often lack ASCII glyphs."""
    if shutil.which("fc-match"):
        try:
            out = subprocess.run(["fc-match", "-f", "%{file}", "sans:lang=en"], capture_output=True, text=True,
                                 timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            out = ""
        if out.lower().endswith((".ttf", ".otf", ".ttc")) and Path(out).is_file():
            return out
    return None


@functools.cache
def _font(size: int, latin: bool) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    path = (find_latin_font() or find_cjk_font()) if latin else (find_cjk_font() or find_latin_font())
    if path is None:
        return ImageFont.load_default(size)
    return ImageFont.truetype(path, size)


def _runs(text: str) -> list[tuple[str, bool]]:
    """Split into runs below U+2E80 (drawn with the Latin font) and CJK runs (the CJK font)."""
    return [(m.group(0), m.group(0) < "\u2e80") for m in re.finditer(r"[\x00-\u2e7f]+|[^\x00-\u2e7f]+", text)]


def _place(canvas: Image.Image, img: Image.Image, y: int, align: str) -> int:
    x = {"left": 0, "center": (canvas.width - img.width) // 2, "right": canvas.width - img.width}[align]
    canvas.paste(img, (max(0, x), y))
    return y + img.height


def _text_image(el: TextElement, text: str, width: int) -> Image.Image:
    _cell_w, cell_h = FONT_DOTS[el.font]
    height = cell_h * el.height
    size = max(8, int(height * 0.85))
    runs = _runs(text) or [(" ", True)]
    total = sum(int(_font(size, latin).getlength(run)) for run, latin in runs) + 2
    img = Image.new("L", (max(1, total), height), 255)
    draw = ImageDraw.Draw(img)
    x = 0.0
    for run, latin in runs:
        font = _font(size, latin)
        for dx in (0, 1) if el.bold else (0,):
            draw.text((x + dx, int(height * 0.82)), run, font=font, fill=0, anchor="ls")
        x += font.getlength(run)
    if el.underline:
        draw.line([(0, height - 1), (img.width, height - 1)], fill=0, width=2)
    if el.width != el.height:
        img = img.resize((max(1, img.width * el.width // el.height), height))
    return img.crop((0, 0, min(img.width, width), height))


def qr_image(token: str, el: QrElement, *, border: int = 4) -> Image.Image:
    """The QR code as a 1-bit image, ``el.size`` dots a module, ``border`` modules of quiet zone."""
    qr = segno.make_qr(token, error=el.ec.lower(), boost_error=False)
    size = int(qr.symbol_size(scale=1, border=border)[0])
    img = Image.new("1", (size, size), 1)
    px = img.load()
    assert px is not None
    for y, row in enumerate(qr.matrix_iter(scale=1, border=border)):
        for x, dark in enumerate(row):
            if dark:
                px[x, y] = 0
    return img.resize((size * el.size, size * el.size), Image.Resampling.NEAREST)


def barcode_image(data: str, el: BarcodeElement) -> Image.Image:
    # dpi 25.4: one millimetre of python-barcode is one pixel, so module_width is in dots
    writer = ImageWriter(mode="L")
    options = {"module_width": el.width, "module_height": el.height, "quiet_zone": 10 * el.width,
               "write_text": False, "dpi": 25.4}
    img: Image.Image = Code128(data, writer=writer).render(options)
    if el.hri:
        hri = _text_image(TextElement(type="text", text=data, font="a"), data, img.width * 4)
        out = Image.new("L", (max(img.width, hri.width), img.height + hri.height), 255)
        out.paste(img, ((out.width - img.width) // 2, 0))
        out.paste(hri, ((out.width - hri.width) // 2, img.height))
        img = out
    return img


def load_logo(path: Path, max_width: int) -> Image.Image:
    with Image.open(path) as src:
        img = src.convert("L")
    if img.width > max_width:
        img = img.resize((max_width, max(1, img.height * max_width // img.width)))
    return img


def draw_upright(tpl: Template, data: TicketData, *, width: int | None = None) -> Image.Image:
    """The face before rotation: ``width`` dots wide, as tall as its elements (cuts are not drawn)."""
    width = width or tpl.width
    values = data.values()
    parts: list[tuple[Image.Image, str]] = []
    for el in tpl.elements:
        if isinstance(el, TextElement):
            parts.append((_text_image(el, tpl.fill_text(el.text, values), width), el.align))
        elif isinstance(el, QrElement):
            parts.append((qr_image(data.token, el, border=2), el.align))
        elif isinstance(el, BarcodeElement):
            parts.append((barcode_image(tpl.fill_text(el.data, values), el), el.align))
        elif isinstance(el, ImageElement):
            parts.append((load_logo(tpl.image_path(el), width), el.align))
        elif isinstance(el, SeparatorElement):
            sep = Image.new("L", (width, 24), 255)
            ImageDraw.Draw(sep).line([(0, 12), (width, 12)], fill=0, width=2)
            parts.append((sep, "left"))
        elif isinstance(el, FeedElement):
            parts.append((Image.new("L", (1, 24 * el.lines), 255), "left"))
        elif isinstance(el, CutElement):
            continue
    height = sum(img.height for img, _ in parts)
    canvas = Image.new("L", (width, max(1, height)), 255)
    y = 0
    for img, align in parts:
        y = _place(canvas, img, y, align)
    return canvas


def render_face(tpl: Template, data: TicketData) -> Image.Image:
    """The face as printed: upright, or rotated so that it is exactly ``tpl.width`` dots wide."""
    if tpl.rotation in (90, 270):
        face = draw_upright(tpl, data, width=tpl.length or tpl.width * 2)
        face = face.rotate(tpl.rotation, expand=True, fillcolor=255)
        if face.width > tpl.width:
            face = face.resize((tpl.width, max(1, face.height * tpl.width // face.width)))
        return face.convert("1", dither=Image.Dither.NONE)
    face = draw_upright(tpl, data)
    if tpl.rotation == 180:
        face = face.rotate(180)
    return face.convert("1", dither=Image.Dither.NONE)
