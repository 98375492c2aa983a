"""The camera QR reader on real OpenCV and real zbar: synthetic ticket frames, video files and folders."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import numpy as np
import pytest

from gate_agent import ConfigError
from gate_agent.app import run_gate
from gate_agent.camera import CameraOptions, Debouncer, FrameDecoder, MultipleCodes, QrCamera
from gate_agent.checkin import Checker, Station
from gate_agent.config import GateConfig, load_config
from gate_agent.store import Store
from protocol.keys import Keyring, Signer
from protocol.reasons import Reason
from protocol.whitelist import WhitelistEntry
from tests.camera_frames import (
    background,
    phone_photo,
    printed_ticket,
    two_tickets,
    write_folder,
    write_video,
)
from tests.gate_helpers import NOW, PERF, eventually, journal_ids, token, write_keys
from tests.support.net import free_port
from tests.test_gate_checkin import RecordingActuator, install

FAST = {"fps": 200.0, "reopen_delay": 0.2}


class Collected:
    def __init__(self) -> None:
        self.codes: list[str] = []
        self.multiple: list[MultipleCodes] = []

    async def code(self, text: str) -> None:
        self.codes.append(text)

    async def multi(self, outcome: MultipleCodes) -> None:
        self.multiple.append(outcome)


def camera(source: Path | str, got: Collected, **opts: object) -> QrCamera:
    options = CameraOptions(str(source), **{**FAST, **opts})  # type: ignore[arg-type]
    return QrCamera(options, got.code, on_multiple=got.multi)


async def run_to_end(cam: QrCamera) -> None:
    await asyncio.wait_for(cam.run(), 10)


async def running(cam: QrCamera, body: Callable[[], Awaitable[None]]) -> None:
    task = asyncio.create_task(cam.run())
    try:
        await body()
        assert not task.done()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20310501)


@pytest.mark.parametrize("kind", ["printed", "phone", "dark"])
def test_each_kind_of_frame_decodes_to_the_exact_token(kind: str, signer: Signer,
                                                        rng: np.random.Generator) -> None:
    code = token(signer, 7)
    assert len(code) == 114
    make = {"printed": printed_ticket, "phone": phone_photo,
            "dark": lambda t, r: phone_photo(t, r, dark=True)}[kind]
    frame = make(code, rng)
    assert frame.shape == (480, 640) and frame.dtype == np.uint8
    decoder = FrameDecoder(invert_every=3)
    results = [decoder.decode(frame) for _ in range(4)]
    if kind == "dark":  # the inverted image is tried every third empty frame, then first
        assert results == [(), (), (code,), (code,)]
    else:
        assert results == [(code,)] * 4


def test_debouncer_reports_once_per_appearance_and_rejects_two_codes() -> None:
    d = Debouncer(window=2.0)
    assert d.feed(("A",), 0.0) == "A"
    assert [d.feed(("A",), t / 10) for t in range(1, 40)] == [None] * 39  # held for 4 s: once
    assert d.feed((), 5.0) is None and d.feed(("A",), 5.5) is None  # out of view 1.6 s < 2 s
    assert d.feed(("A",), 7.6) == "A"  # out of view 2.1 s
    assert d.feed(("A", "B"), 7.7) == MultipleCodes(("A", "B"))
    assert d.feed(("B", "A"), 7.8) is None  # same pair still in view
    assert d.feed(("B",), 7.9) == "B"  # A taken away: B alone is read at once
    assert d.feed(("A",), 8.0) is None  # A stayed "in view" through the two-code frames


async def test_folder_of_printed_phone_and_dark_frames_reports_each_ticket_once(
        tmp_path: Path, signer: Signer, rng: np.random.Generator) -> None:
    a, b, c = token(signer, 1), token(signer, 2), token(signer, 3)
    frames = ([printed_ticket(a, rng)] * 4 + [background(rng)] * 2 + [phone_photo(b, rng)] * 4
              + [background(rng)] * 2 + [phone_photo(c, rng, dark=True)] * 6 + [background(rng)] * 2)
    write_folder(tmp_path / "cam", frames)
    got = Collected()
    cam = camera(tmp_path / "cam", got)
    await run_to_end(cam)
    assert got.codes == [a, b, c] and got.multiple == []
    assert cam.frames_read == len(frames)


async def test_frames_without_a_code_report_nothing(tmp_path: Path, rng: np.random.Generator) -> None:
    write_folder(tmp_path / "cam", [background(rng) for _ in range(8)])
    got = Collected()
    cam = camera(tmp_path / "cam", got)
    await run_to_end(cam)
    assert got.codes == [] and got.multiple == [] and cam.frames_read == 8


async def test_two_codes_in_one_frame_are_rejected_and_neither_is_scanned(
        tmp_path: Path, signer: Signer, rng: np.random.Generator, caplog: pytest.LogCaptureFixture) -> None:
    a, b = token(signer, 1), token(signer, 2)
    write_folder(tmp_path / "cam", [two_tickets(a, b, rng)] * 5)
    got = Collected()
    await run_to_end(camera(tmp_path / "cam", got))
    assert got.codes == []
    assert len(got.multiple) == 1 and set(got.multiple[0].texts) == {a, b}
    assert got.multiple[0].text_zh == "请一次扫一张票"
    assert "2 different codes in one frame" in caplog.text


async def test_video_held_code_is_scanned_once_and_again_after_leaving_view(
        tmp_path: Path, signer: Signer, rng: np.random.Generator) -> None:
    code = token(signer, 7)
    held = [printed_ticket(code, rng) for _ in range(30)]
    empty = background(rng)
    # held 30 frames, a 5-frame blink (shorter than the window), held again, gone 30 frames, back
    video = write_video(tmp_path / "cam.avi", held + [empty] * 5 + held + [empty] * 30 + held)
    got = Collected()
    cam = camera(video, got, fps=60.0, debounce_s=0.25)
    await run_to_end(cam)
    assert cam.frames_read == 125
    assert got.codes == [code, code]


async def test_camera_unplugged_goes_missing_and_resumes_when_back(
        tmp_path: Path, signer: Signer, rng: np.random.Generator) -> None:
    a, b = token(signer, 1), token(signer, 2)
    folder, away = tmp_path / "cam", tmp_path / "unplugged"
    write_folder(folder, [printed_ticket(a, rng)] * 3)
    got = Collected()
    cam = camera(folder, got, fps=50.0, loop=True, debounce_s=0.3)

    async def body() -> None:
        await eventually(lambda: got.codes == [a], what="first ticket")
        assert cam.health() == "ok"
        folder.rename(away)
        await eventually(lambda: cam.health() == "missing", what="camera missing")
        for old in away.iterdir():
            old.unlink()
        write_folder(away, [printed_ticket(b, rng)] * 3)
        seen = cam.frames_read
        await asyncio.sleep(0.5)  # several reopen attempts while it is gone
        assert cam.health() == "missing" and cam.frames_read == seen
        away.rename(folder)
        await eventually(lambda: got.codes == [a, b], what="reading resumed")
        assert cam.health() == "ok"

    await running(cam, body)


async def test_a_missing_device_is_reported_and_retried(caplog: pytest.LogCaptureFixture) -> None:
    got = Collected()
    cam = camera("/dev/video97", got)

    async def body() -> None:
        await asyncio.sleep(0.5)
        assert cam.health() == "missing" and cam.frames_read == 0

    await running(cam, body)
    assert caplog.text.count("camera /dev/video97 is not present") == 1  # logged once, retried quietly


async def test_camera_to_checker_journals_admitted_and_malformed_with_source_qr(
        tmp_path: Path, signer: Signer, keyring: Keyring, rng: np.random.Generator) -> None:
    code = token(signer, 7)
    write_folder(tmp_path / "cam", [phone_photo(code, rng)] * 3 + [background(rng)]
                 + [printed_ticket("HELLO-not-a-ticket", rng)] * 3)
    with Store.open(tmp_path / "gate") as store:
        install(store, signer, keyring, [WhitelistEntry(7, PERF, 3)])
        act = RecordingActuator()
        checker = Checker(Station("gate-1", 1, 1), store, keyring, act, clock=lambda: NOW)

        async def on_code(text: str) -> None:
            await checker.scan(text, "qr")

        await run_to_end(QrCamera(CameraOptions(str(tmp_path / "cam"), fps=200.0), on_code))
        journal = store.journal()
    assert [(e["reason"], e["source"], e.get("ticket_id")) for e in journal] == [
        (Reason.ADMITTED, "qr", 7), (Reason.MALFORMED, "qr", None)]
    assert journal[1]["excerpt"] == "HELLO-not-a-ticket"
    assert [c[0] for c in act.calls] == ["admit", "reject"]


def test_camera_config_defaults_and_strictness(tmp_path: Path) -> None:
    cfg = GateConfig()
    assert cfg.camera.enabled is False and cfg.camera.debounce_s == 2.0 and cfg.camera.loop is False
    toml = tmp_path / "gate.toml"
    toml.write_text('[camera]\nenabled = true\nsource = 0\nfps = 10\n')
    cam = load_config(toml).camera
    assert cam.enabled and cam.source == 0 and cam.fps == 10
    toml.write_text('[camera]\nenabled = true\nsorce = "/dev/video0"\n')
    with pytest.raises(ConfigError, match="sorce"):
        load_config(toml)


async def test_run_gate_feeds_the_camera_to_the_checker(tmp_path: Path, signer: Signer, keyring: Keyring,
                                                       rng: np.random.Generator) -> None:
    code = token(signer, 7, now=time.time())
    write_folder(tmp_path / "cam", [printed_ticket(code, rng)] * 3)
    data_dir = tmp_path / "gate"
    with Store.open(data_dir) as store:
        install(store, signer, keyring, [WhitelistEntry(7, PERF, 3)])
    cfg = GateConfig(data_dir=data_dir, hub_keys_file=write_keys(tmp_path / "keys.json", signer),
                     mqtt={"port": free_port()}, scanner={"url": str(tmp_path / "no-scanner")},
                     camera={"enabled": True, "source": str(tmp_path / "cam"), "fps": 100})
    stop = asyncio.Event()
    gate = asyncio.create_task(run_gate(cfg, stop))
    try:
        await eventually(lambda: journal_ids(data_dir / "gate.db"), what="a journalled camera scan")
    finally:
        stop.set()
        await asyncio.wait_for(gate, 10)
    with Store.open(data_dir) as store:
        assert [(e["reason"], e["source"]) for e in store.journal()] == [(Reason.ADMITTED, "qr")]


def test_decoder_returns_to_normal_after_a_dark_screen(signer: Signer, rng: np.random.Generator) -> None:
    dark, light = token(signer, 1), token(signer, 2)
    decoder = FrameDecoder(invert_every=1)
    assert decoder.decode(phone_photo(dark, rng, dark=True)) == (dark,)
    assert decoder.decode(printed_ticket(light, rng)) == (light,)  # inverted first failed, normal read it
    assert decoder.decode(printed_ticket(light, rng)) == (light,)
