"""Templates to ESC/POS bytes (python-escpos Dummy) and to a PNG preview (Pillow), without a printer."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from printer_agent import TemplateError
from printer_agent.escpos_render import FS_CHINESE_ON, render_job
from printer_agent.preview import TicketData, render_face
from printer_agent.template import TEMPLATE_DIR, load_template
from tests.printer_helpers import FIELDS, ROOT, decode_qr

TOKEN = "GT1.eyJ0IjoxMjN9.c2lnbmF0dXJl-_x"
DATA = TicketData(TOKEN, 4711, "0123456789abcdef0123456789abcdef", FIELDS)


def test_ticket_bytes_have_init_text_qr_barcode_logo_and_cut() -> None:
    raw = render_job(load_template("ticket"), DATA)
    assert raw.startswith(b"\x1b@")                                       # INIT
    assert b"\x1d(k" in raw and b"1P0" + TOKEN.encode() in raw            # native QR, store data = the token
    assert b"\x1dkI" in raw and b"{B4711" in raw                          # GS k CODE128 of the ticket id
    assert b"\x1dv0" in raw                                               # GS v 0 raster (the logo)
    assert b"\x1dV" in raw[-8:]                                           # the cut, last
    assert raw.index(b"\x1dv0") < raw.index(b"\x1d(k") < raw.index(b"\x1dkI")
    # Chinese text in the printer's Chinese mode, GB18030
    assert FS_CHINESE_ON + "茶馆".encode("gb18030") in raw
    assert b"2031-09-12 19:30\n" in raw


def test_cjk_raster_mode_never_sends_gb18030() -> None:
    raw = render_job(load_template("ticket"), DATA, cjk="raster")
    assert FS_CHINESE_ON not in raw and raw.count(b"\x1dv0") >= 5


def test_preview_png_decodes_to_exactly_the_token(tmp_path: Path) -> None:
    img = render_face(load_template("ticket"), DATA)
    assert img.width == 576
    assert decode_qr(img) == [TOKEN]


@pytest.mark.parametrize("name", ["ticket_180", "ticket_vertical"])
def test_rotation_changes_the_output_and_keeps_the_qr(name: str) -> None:
    upright = render_job(load_template("ticket"), DATA)
    rotated = render_job(load_template(name), DATA)
    assert rotated != upright
    assert rotated.startswith(b"\x1b@") and b"\x1dv0" in rotated and b"\x1d(k" not in rotated  # one raster
    face = render_face(load_template(name), DATA)
    assert face.width == 576
    assert decode_qr(face) == [TOKEN]
    if name == "ticket_180":  # the upright face turned half round, pixel for pixel
        up = render_face(load_template("ticket"), DATA)
        assert face.rotate(180).tobytes() == up.tobytes()
    else:
        assert face.height > face.width


def test_unknown_template_and_missing_field_are_refused(tmp_path: Path) -> None:
    with pytest.raises(TemplateError) as exc:
        load_template("no-such-template")
    assert exc.value.code == "unknown_template"
    fields = {k: v for k, v in FIELDS.items() if k != "holder"}
    with pytest.raises(TemplateError) as exc:
        render_job(load_template("ticket"), TicketData(TOKEN, 1, "j", fields))
    assert exc.value.code == "bad_template"
    (tmp_path / "broken.toml").write_text('width = 576\n[[elements]]\ntype = "hologram"\n')
    with pytest.raises(TemplateError) as exc:
        load_template("broken", tmp_path)
    assert exc.value.code == "bad_template"
    (tmp_path / "escape.toml").write_text('[[elements]]\ntype = "image"\npath = "../../etc/passwd"\n')
    with pytest.raises(TemplateError):
        load_template("escape", tmp_path)


def test_preview_command_writes_a_decodable_png(tmp_path: Path) -> None:
    out = tmp_path / "ticket.png"
    args = [sys.executable, "-m", "printer_agent", "preview", "--template", "ticket", "--token", TOKEN,
            "--ticket-id", "4711", "--out", str(out), "--escpos", str(tmp_path / "t.bin")]
    for k, v in FIELDS.items():
        args += ["--field", f"{k}={v}"]
    subprocess.run(args, check=True, cwd=ROOT, capture_output=True, timeout=60)
    assert decode_qr(Image.open(out)) == [TOKEN]
    assert (tmp_path / "t.bin").read_bytes().startswith(b"\x1b@")
    bad = subprocess.run([*args[:6], "--out", str(tmp_path / "x.png")], cwd=ROOT, capture_output=True, timeout=60)
    assert bad.returncode == 2 and b"missing --field" in bad.stderr


def test_templates_shipped_all_load() -> None:
    names = sorted(p.stem for p in TEMPLATE_DIR.glob("*.toml"))
    assert names == ["ticket", "ticket_180", "ticket_vertical"]
    for name in names:
        load_template(name)
