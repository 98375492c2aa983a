"""Ticket templates: TOML files in a template directory, validated by one typed model.

    >>> tpl = load_template("ticket")                      # printer_agent/templates/ticket.toml
    >>> lines = tpl.fill_text("{performance_name}", {"performance_name": "茶馆"})

A template is a page width in dots, a rotation and a list of elements printed top to bottom:
``text``, ``qr`` (the job's token), ``barcode``, ``image``, ``separator``, ``feed`` and ``cut``.
Placeholders ``{name}`` take their value from ``PrintJob.fields`` plus ``ticket_id`` and ``job_id``;
a placeholder the job does not supply makes the job ``refused`` with ``bad_template``.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from printer_agent import TemplateError

TEMPLATE_DIR = Path(__file__).parent / "templates"
_NAME = re.compile(r"^[a-z0-9_-]{1,40}$")
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
Align = Literal["left", "center", "right"]


class _Element(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TextElement(_Element):
    type: Literal["text"]
    text: str = Field(description="the line; {placeholders} from the job's fields")
    font: Literal["a", "b"] = Field("a", description="printer font a (12x24 dots) or b (9x17 dots)")
    width: int = Field(1, ge=1, le=8, description="character width multiplier")
    height: int = Field(1, ge=1, le=8, description="character height multiplier")
    bold: bool = False
    underline: bool = False
    align: Align = "left"


class QrElement(_Element):
    type: Literal["qr"]
    size: int = Field(8, ge=1, le=16, description="module size in dots")
    ec: Literal["L", "M", "Q", "H"] = Field("M", description="error correction level")
    align: Align = "center"


class BarcodeElement(_Element):
    type: Literal["barcode"]
    data: str = Field("{ticket_id}", description="barcode content; {placeholders} allowed")
    symbology: Literal["CODE128"] = "CODE128"
    height: int = Field(80, ge=1, le=255, description="bar height in dots")
    width: int = Field(2, ge=2, le=6, description="module width in dots")
    hri: bool = Field(True, description="print the human-readable digits below")
    align: Align = "center"


class ImageElement(_Element):
    type: Literal["image"]
    path: str = Field(description="PNG file, relative to the template directory")
    align: Align = "center"


class SeparatorElement(_Element):
    type: Literal["separator"]
    char: str = Field("-", min_length=1, max_length=1)


class FeedElement(_Element):
    type: Literal["feed"]
    lines: int = Field(1, ge=1, le=20)


class CutElement(_Element):
    type: Literal["cut"]
    mode: Literal["full", "partial"] = "full"


Element = Annotated[TextElement | QrElement | BarcodeElement | ImageElement | SeparatorElement | FeedElement
                    | CutElement, Field(discriminator="type")]


class Template(BaseModel):
    """One ticket face."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9_-]{1,40}$")
    width: int = Field(576, ge=128, le=832, description="printable width in dots (576 = 80 mm paper at 203 dpi)")
    rotation: Literal[0, 90, 180, 270] = Field(
        0, description="0: native ESC/POS elements; 90/180/270: the whole face is rendered as an image, "
        "rotated, and sent as one raster (for vertical or upside-down ticket stock)")
    length: int = Field(0, ge=0, le=4000, description="face length in dots before rotation by 90/270 "
                        "(the long side of vertical stock); 0: the natural length")
    elements: tuple[Element, ...] = Field(min_length=1)
    directory: Path = Field(TEMPLATE_DIR, exclude=True, description="where relative image paths resolve")

    def placeholders(self) -> set[str]:
        names: set[str] = set()
        for el in self.elements:
            if isinstance(el, TextElement):
                names |= set(_PLACEHOLDER.findall(el.text))
            elif isinstance(el, BarcodeElement):
                names |= set(_PLACEHOLDER.findall(el.data))
        return names

    def image_path(self, el: ImageElement) -> Path:
        path = (self.directory / el.path).resolve()
        if not path.is_relative_to(self.directory.resolve()):
            raise TemplateError(f"template {self.name}: image {el.path!r} is outside the template directory")
        return path

    @staticmethod
    def fill_text(text: str, values: dict[str, str]) -> str:
        """Replace every ``{name}``; raise TemplateError(bad_template) for a name not in ``values``."""
        def sub(m: re.Match[str]) -> str:
            if m.group(1) not in values:
                raise TemplateError(f"placeholder {{{m.group(1)}}} has no value in the job", "bad_template")
            return values[m.group(1)]
        return _PLACEHOLDER.sub(sub, text)


def load_template(name: str, directory: Path = TEMPLATE_DIR) -> Template:
    """Read ``directory/<name>.toml``. Raise TemplateError (unknown_template or bad_template)."""
    if not _NAME.match(name):
        raise TemplateError(f"template name {name[:50]!r} is invalid", "unknown_template")
    path = directory / f"{name}.toml"
    if not path.is_file():
        raise TemplateError(f"no template {name!r} in {directory}", "unknown_template")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        tpl = Template.model_validate({"name": name, **data, "directory": directory})
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise TemplateError(f"template {path} is not valid TOML: {exc}") from exc
    except ValidationError as exc:
        errs = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise TemplateError(f"template {path} is invalid: {errs}") from exc
    for el in tpl.elements:
        if isinstance(el, ImageElement) and not tpl.image_path(el).is_file():
            raise TemplateError(f"template {name}: image {el.path!r} does not exist")
    return tpl
