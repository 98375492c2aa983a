"""A template and a job to ESC/POS bytes, with python-escpos's ``Dummy`` printer.

    >>> data = render_job(load_template("ticket"), TicketData("T0KEN", 123, "job-1", {...}))
    >>> data[:2] == b"\\x1b@"          # ESC @ (INIT) first; then text, GS ( k QR, GS k barcode, GS v 0, GS V
    True

Rendering is pure and happens when the job is accepted, so a bad template is refused before anything
is queued, and the queue holds exactly the bytes that will be sent.

Text: ASCII goes through python-escpos's ``text``. Other text (Chinese) is sent per ``cjk`` mode:

* ``gb18030`` (default): ``FS &`` (enter the Chinese character mode of Chinese-market printers),
  the text encoded GB18030, ``FS .`` (leave it). Characters GB18030 lacks become ``?``.
* ``raster``: the line is drawn with the CJK font of :mod:`printer_agent.preview` and sent as a raster
  image (``GS v 0``): slower, but right on any printer, including ones without a Chinese font ROM.

A rotated template (90/180/270) is sent as one raster image of the rotated face (the QR is then an
image, not a native ``GS ( k``): ESC/POS ``ESC {`` upside-down mode would turn only the text.
"""

from __future__ import annotations

import contextlib
import io
import logging
from typing import Literal

from escpos.escpos import Escpos
from escpos.printer import Dummy
from PIL import Image

from printer_agent import TemplateError
from printer_agent.preview import TicketData, _text_image, load_logo, render_face
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

CjkMode = Literal["gb18030", "raster"]
FS_CHINESE_ON = b"\x1c&"
FS_CHINESE_OFF = b"\x1c."
_EC = {"L": 0, "M": 1, "Q": 2, "H": 3}  # python-escpos QR_ECLEVEL_*


def _text(p: Escpos, el: TextElement, text: str, tpl: Template, cjk: CjkMode) -> None:
    p.set(align=el.align, font=el.font, bold=el.bold, underline=1 if el.underline else 0,
          width=el.width, height=el.height, custom_size=el.width > 1 or el.height > 1,
          normal_textsize=el.width == 1 and el.height == 1)
    if text.isascii():
        p.textln(text)
    elif cjk == "gb18030":
        p._raw(FS_CHINESE_ON + text.encode("gb18030", errors="replace") + FS_CHINESE_OFF + b"\n")
    else:
        p.image(_text_image(el, text, tpl.width).convert("1"), center=el.align == "center")
    p.set_with_default()


def _barcode(p: Escpos, el: BarcodeElement, data: str) -> None:
    if not data.isascii() or not data.isprintable():
        raise TemplateError(f"barcode data {data[:40]!r} is not printable ASCII", "bad_template")
    p.set(align=el.align)
    p.barcode("{B" + data, "CODE128", height=el.height, width=el.width, pos="BELOW" if el.hri else "OFF",
              function_type="B", align_ct=el.align == "center")
    p.set_with_default()


def _elements(p: Escpos, tpl: Template, data: TicketData, cjk: CjkMode) -> None:
    values = data.values()
    for el in tpl.elements:
        if isinstance(el, TextElement):
            _text(p, el, tpl.fill_text(el.text, values), tpl, cjk)
        elif isinstance(el, QrElement):
            p.set(align=el.align)
            p.qr(data.token, ec=_EC[el.ec], size=el.size, native=True)
            p.set_with_default()
        elif isinstance(el, BarcodeElement):
            _barcode(p, el, tpl.fill_text(el.data, values))
        elif isinstance(el, ImageElement):
            p.image(load_logo(tpl.image_path(el), tpl.width).convert("1"), center=el.align == "center")
        elif isinstance(el, SeparatorElement):
            p.textln(el.char * (tpl.width // 12))
        elif isinstance(el, FeedElement):
            p.ln(el.lines)
        elif isinstance(el, CutElement):
            p.cut(mode="FULL" if el.mode == "full" else "PART")


def _rotated(p: Escpos, tpl: Template, data: TicketData) -> None:
    face: Image.Image = render_face(tpl, data)
    p.image(face, center=True)
    for el in tpl.elements:
        if isinstance(el, CutElement):
            p.cut(mode="FULL" if el.mode == "full" else "PART")
            break


def render_job(tpl: Template, data: TicketData, *, profile: str = "TM-T20II", cjk: CjkMode = "gb18030") -> bytes:
    """The job as ESC/POS bytes, INIT first. Raise TemplateError for a placeholder without value."""
    missing = tpl.placeholders() - data.values().keys()
    if missing:
        raise TemplateError(f"template {tpl.name} needs fields the job lacks: {sorted(missing)}", "bad_template")
    chatter = io.StringIO()  # python-escpos reports with print(); keep it off stdout
    with contextlib.redirect_stdout(chatter):
        p = Dummy(profile=profile)
        p.hw("INIT")
        if tpl.rotation == 0:
            _elements(p, tpl, data, cjk)
        else:
            _rotated(p, tpl, data)
        out = bytes(p.output)
    if chatter.getvalue().strip():
        log.debug("python-escpos: %s", chatter.getvalue().strip()[:200])
    return out
