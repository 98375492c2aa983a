#!/usr/bin/env python3
"""Camera QR latency: decode time per 640x480 frame, and frame-to-relay latency through the checker.

Decode: our camera path (BGR frame -> grayscale -> zbar, QR only, inverted retry logic) on clean
printed-ticket frames and on "phone" frames (rotated, tilted, blurred, noisy, JPEG'd), next to raw
``pyzbar.decode`` of the same grayscale frames measured in the same run.

Scan to relay: a frame becomes available (the frame source returns it) -> decode on the camera's
worker thread -> debounce -> ``Checker.scan`` (token verify, whitelist lookup, validate, journal
commit with ``synchronous=FULL``) -> actuator call, timed by an actuator that records its call time.
Every frame shows a different valid ticket, so every frame is one admission.

    .venv/bin/python bench/qr_scan.py [--frames 150]

The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from pyzbar import pyzbar

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gate_agent.camera import CameraOptions, FrameDecoder, QrCamera, to_gray
from gate_agent.checkin import Checker, Station
from gate_agent.store import Store
from protocol.decision import Decision
from protocol.keys import Keyring, Signer
from protocol.token import TicketToken, encode_token
from protocol.whitelist import ChannelRules, GroupRules, WhitelistEntry
from tests.camera_frames import phone_photo, printed_ticket


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * p))], 2)


def bgr(gray: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)  # what a capture device hands over


def time_ms(fn: Callable[[np.ndarray], str | None], frames: list[np.ndarray], expect: list[str]) -> list[float]:
    out = []
    for frame, text in zip(frames, expect, strict=True):
        t0 = time.perf_counter()
        got = fn(frame)
        out.append((time.perf_counter() - t0) * 1000)
        assert got == text, "frame did not decode to its token"
    return out


def ours(decoder: FrameDecoder) -> Callable[[np.ndarray], str | None]:
    def run(frame: np.ndarray) -> str | None:
        texts = decoder.decode(to_gray(frame))
        return texts[0] if len(texts) == 1 else None
    return run


def raw(gray: np.ndarray) -> str | None:
    res = pyzbar.decode(gray, symbols=[pyzbar.ZBarSymbol.QRCODE])
    return res[0].data.decode() if res else None


class MemoryFrames:
    """A camera handing over pre-rendered BGR frames; notes when each became available."""

    def __init__(self, frames: list[np.ndarray]) -> None:
        self.frames = frames
        self.i = 0
        self.available_at = 0.0

    def read(self) -> np.ndarray | None:
        if self.i >= len(self.frames):
            return None
        frame = self.frames[self.i]
        self.i += 1
        self.available_at = time.perf_counter()
        return to_gray(frame)

    def close(self) -> None:
        pass


class TimingActuator:
    def __init__(self, frames: MemoryFrames) -> None:
        self.frames = frames
        self.latencies: list[float] = []
        self.admitted = 0

    async def admit(self, decision: Decision) -> None:
        self.latencies.append((time.perf_counter() - self.frames.available_at) * 1000)
        self.admitted += 1

    async def reject(self, decision: Decision) -> None:
        self.latencies.append((time.perf_counter() - self.frames.available_at) * 1000)


async def scan_to_relay(frames: list[np.ndarray], n_tickets: int, signer: Signer, data_dir: Path) -> TimingActuator:
    keyring = Keyring.of(signer)
    rules = GroupRules(1, frozenset({42}), {1: ChannelRules(1, frozenset({3}))})
    with Store.open(data_dir) as store:
        store.install_snapshot(1, 1, rules, (WhitelistEntry(i, 42, 3) for i in range(1, n_tickets + 1)))
        source = MemoryFrames(frames)
        actuator = TimingActuator(source)
        checker = Checker(Station("bench", 1, 1), store, keyring, actuator)

        async def on_code(text: str) -> None:
            await checker.scan(text, "qr")

        camera = QrCamera(CameraOptions("memory", fps=1000.0), on_code, opener=lambda _opts: source)
        await asyncio.wait_for(camera.run(), 120)
    return actuator


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=150, help="frames of each kind")
    args = parser.parse_args()
    logging.disable(logging.INFO)
    n = args.frames
    rng = np.random.default_rng(7)
    signer = Signer.generate(1)
    now = time.time()
    tokens = [encode_token(TicketToken(i, 42, 3, int(now - 60), int(now + 3600)), signer) for i in range(1, n + 1)]
    clean = [printed_ticket(t, rng) for t in tokens]
    phone = [phone_photo(t, rng) for t in tokens]

    for frame in clean[:10] + phone[:10]:  # warm-up
        raw(frame)
    figures: dict[str, float] = {}
    for name, grays in (("clean", clean), ("phone", phone)):
        mine = time_ms(ours(FrameDecoder()), [bgr(g) for g in grays], tokens)
        base = time_ms(raw, grays, tokens)
        figures[f"decode_{name}_p50_ms"] = pct(mine, 0.5)
        figures[f"decode_{name}_p99_ms"] = pct(mine, 0.99)
        figures[f"raw_pyzbar_{name}_p50_ms"] = pct(base, 0.5)
        figures[f"raw_pyzbar_{name}_p99_ms"] = pct(base, 0.99)

    with tempfile.TemporaryDirectory() as tmp:
        act = asyncio.run(scan_to_relay([bgr(g) for g in phone], n, signer, Path(tmp)))
    assert act.admitted == n, f"{act.admitted} of {n} phone frames admitted"
    lat = act.latencies[5:]  # the first few warm the store and the thread
    figures["scan_to_relay_p50_ms"] = pct(lat, 0.5)
    figures["scan_to_relay_p99_ms"] = pct(lat, 0.99)
    figures["scan_to_relay_max_ms"] = round(max(lat), 2)
    figures["frames"] = n
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
