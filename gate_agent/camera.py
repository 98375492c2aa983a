"""Camera QR reading: frames from OpenCV, QR codes from zbar, one report per ticket shown.

    >>> camera = QrCamera(CameraOptions("/dev/video0"), functools.partial(checker.scan, source="qr"))
    >>> task = asyncio.create_task(camera.run())
    >>> camera.health()
    'ok'

The source is a V4L2 device (``/dev/video0`` or an index such as ``0``), a video file, a folder of
images (read in name order) or an OpenCV image-sequence pattern (``frames/f_%04d.png``); the last
three simulate a camera. Every OpenCV and zbar call runs on one worker thread owned by the reader,
so the event loop never blocks; decoded texts are handed to an async callback on the loop.

Like the serial scanner the reader never dies of its input: a camera that disappears is reopened
every ``reopen_delay`` seconds (health ``"missing"`` meanwhile), an unexpected failure is logged and
retried (health ``"error"``), and a callback that raises is logged and reading goes on.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
from pyzbar import pyzbar

from confkit.reopen import Health, HealthCell, Next, reopen_loop

log = logging.getLogger(__name__)

Gray = np.ndarray
CodeHandler = Callable[[str], Awaitable[object]]
MultipleHandler = Callable[["MultipleCodes"], Awaitable[object]]

REOPEN_DELAY = 1.0
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".pgm", ".ppm", ".tif", ".tiff", ".webp"})
_LOG_EXCERPT = 24


class CameraLost(OSError):
    """The camera cannot be opened or stopped delivering frames."""


@dataclass(frozen=True, slots=True)
class CameraOptions:
    """How to read one camera. ``source`` as in :class:`gate_agent.config.CameraConfig`."""

    source: str | int = "/dev/video0"
    fps: float = 15.0  # at most this many frames are read per second
    debounce_s: float = 2.0  # a code is reported again only after this long out of view
    width: int = 640  # requested from a device; files and images keep their size
    height: int = 480
    loop: bool = False  # a file or folder restarts at its end instead of stopping
    reopen_delay: float = REOPEN_DELAY
    invert_every: int = 3  # with nothing decoded, also try the inverted image every N frames


@dataclass(frozen=True, slots=True)
class MultipleCodes:
    """A frame showing two or more different codes: none of them is decided."""

    texts: tuple[str, ...]
    text_en = "One ticket at a time, please."
    text_zh = "请一次扫一张票"


class QrSource(Protocol):
    """Anything that reads QR codes and hands them on: a camera, or a fake of it in tests."""

    async def run(self) -> None:
        """Read until cancelled (or until a finite simulated source ends)."""

    def health(self) -> Health:
        """``"ok"`` while frames arrive, ``"missing"`` while the camera is gone, ``"error"`` after a fault."""


# ---- decoding (pure, on the worker thread) ------------------------------------------------------

def decode_qr(gray: Gray) -> tuple[str, ...]:
    """The distinct QR texts zbar finds in one 8-bit grayscale image, in zbar's order."""
    texts: list[str] = []
    for symbol in pyzbar.decode(gray, symbols=[pyzbar.ZBarSymbol.QRCODE]):
        text = symbol.data.decode("utf-8", errors="replace")
        if text not in texts:
            texts.append(text)
    return tuple(texts)


class FrameDecoder:
    """Decodes frames; retries on the inverted image (dark-mode phone screens) every few frames.

    Once an inverted code has been read, the inverted image is tried first until it stops reading,
    so a dark-mode screen held in view is read on every frame at the cost of one decode.
    """

    def __init__(self, invert_every: int = 3) -> None:
        self.invert_every = max(1, invert_every)
        self._misses = 0
        self._inverted_first = False

    def decode(self, gray: Gray) -> tuple[str, ...]:
        if self._inverted_first:
            texts = decode_qr(255 - gray)
            if texts:
                return texts
            self._inverted_first = False  # the dark screen left: back to normal, one extra decode
            return decode_qr(gray)
        texts = decode_qr(gray)
        if texts:
            self._misses = 0
            return texts
        self._misses += 1
        if self._misses % self.invert_every == 0:
            texts = decode_qr(255 - gray)
            self._inverted_first = bool(texts)
        return texts


class Debouncer:
    """Reports a code once while it stays in view; again only after ``window`` seconds out of view.

    Frames with several different codes are reported (debounced the same way) as a rejection;
    they keep a code already reported "in view" but never make a new code count as seen, so
    the ticket left after the patron takes one away is read at once.
    """

    def __init__(self, window: float) -> None:
        self.window = window
        self._seen: dict[str, float] = {}
        self._multi: dict[frozenset[str], float] = {}

    def _fresh(self, last: float | None, now: float) -> bool:
        return last is None or now - last > self.window

    def feed(self, texts: tuple[str, ...], now: float) -> str | MultipleCodes | None:
        """What to report for one frame's codes seen at ``now``, if anything."""
        self._seen = {k: t for k, t in self._seen.items() if now - t <= self.window}
        self._multi = {k: t for k, t in self._multi.items() if now - t <= self.window}
        if not texts:
            return None
        if len(texts) > 1:
            for text in texts:
                if text in self._seen:
                    self._seen[text] = now
            key = frozenset(texts)
            report = self._fresh(self._multi.get(key), now)
            self._multi[key] = now
            return MultipleCodes(texts) if report else None
        text = texts[0]
        report = self._fresh(self._seen.get(text), now)
        self._seen[text] = now
        return text if report else None


# ---- frame sources (blocking; used only on the worker thread) -----------------------------------

class Frames(Protocol):
    def read(self) -> Gray | None:
        """The next grayscale frame; None at the end of a finite source. Raises :class:`CameraLost`."""

    def close(self) -> None: ...


def to_gray(frame: np.ndarray) -> Gray:
    if frame.ndim == 2:
        return frame
    code = cv2.COLOR_BGRA2GRAY if frame.shape[2] == 4 else cv2.COLOR_BGR2GRAY
    return cv2.cvtColor(frame, code)


class CaptureFrames:
    """A ``cv2.VideoCapture``: a device (endless) or a file / image sequence (finite)."""

    def __init__(self, cap: cv2.VideoCapture, name: str, *, finite: bool) -> None:
        self.cap = cap
        self.name = name
        self.finite = finite

    def read(self) -> Gray | None:
        ok, frame = self.cap.read()
        if ok and frame is not None:
            return to_gray(frame)
        if self.finite:
            return None
        raise CameraLost(f"camera {self.name} stopped delivering frames")

    def close(self) -> None:
        self.cap.release()


class FolderFrames:
    """The images of a folder in name order; re-listed each time it is opened."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        self._next = 0

    def read(self) -> Gray | None:
        while self._next < len(self.files):
            path = self.files[self._next]
            self._next += 1
            image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
            if image is not None:
                return image
            if not self.folder.is_dir():
                raise CameraLost(f"image folder {self.folder} disappeared")
            log.debug("camera: cannot read image %s; skipped", path)
        return None

    def close(self) -> None:
        self.files = []


def device_of(source: str | int) -> str | int | None:
    """The V4L2 device a source names (an index or a ``/dev/`` path), or None for a file or folder."""
    if isinstance(source, int):
        return source
    if source.isdigit():
        return int(source)
    return source if source.startswith("/dev/") else None


def open_frames(opts: CameraOptions) -> Frames:
    """Open ``opts.source``. Raises :class:`CameraLost` when it is not there (yet)."""
    device = device_of(opts.source)
    if device is not None:
        node = f"/dev/video{device}" if isinstance(device, int) else device
        if not os.path.exists(node):  # spare OpenCV's warnings on every retry
            raise CameraLost(f"camera {node} is not present")
        cap = cv2.VideoCapture(device, cv2.CAP_V4L2)
        if not cap.isOpened():
            cap.release()
            raise CameraLost(f"camera {node} cannot be opened")
        cap.set(cv2.CAP_PROP_FRAME_WIDTH, opts.width)
        cap.set(cv2.CAP_PROP_FRAME_HEIGHT, opts.height)
        cap.set(cv2.CAP_PROP_FPS, opts.fps)
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # read the newest frame, not a stale queued one
        return CaptureFrames(cap, node, finite=False)
    source = str(opts.source)
    path = Path(source)
    if path.is_dir():
        return FolderFrames(path)
    if "%" in source:
        if not path.parent.is_dir():
            raise CameraLost(f"image sequence folder {path.parent} is not present")
        cap = cv2.VideoCapture(source, cv2.CAP_IMAGES)
    elif path.is_file():
        cap = cv2.VideoCapture(source)
    else:
        raise CameraLost(f"camera source {source} is not present")
    if not cap.isOpened():
        cap.release()
        raise CameraLost(f"camera source {source} cannot be opened")
    return CaptureFrames(cap, source, finite=True)


# ---- the reader ---------------------------------------------------------------------------------

def _excerpt(text: str) -> str:
    if text.strip().startswith("#"):  # a supervisor PIN shown as a QR: never logged
        return "#…"
    return "".join(c if c.isprintable() else "?" for c in text[:_LOG_EXCERPT])


class QrCamera:
    """Reads QR codes from one camera and hands each new code to ``on_code``.

    ``on_multiple`` (optional) gets the frames showing several different codes, to show
    :attr:`MultipleCodes.text_zh` / ``text_en``; those frames are always logged and never decided.
    """

    def __init__(self, options: CameraOptions, on_code: CodeHandler, *,
                 on_multiple: MultipleHandler | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 opener: Callable[[CameraOptions], Frames] = open_frames) -> None:
        self.options = options
        self.on_code = on_code
        self.on_multiple = on_multiple
        self.clock = clock
        self.opener = opener  # blocking; runs on the worker thread
        self._health = HealthCell()
        self.connected = self._health.connected  # set while frames arrive
        self.frames_read = 0
        self._decoder = FrameDecoder(options.invert_every)
        self._debouncer = Debouncer(options.debounce_s)

    def health(self) -> Health:
        return self._health()

    def _next(self, frames: Frames) -> tuple[str, ...] | None:
        """Worker thread: read and decode one frame."""
        gray = frames.read()
        if gray is None:
            return None
        return self._decoder.decode(gray)

    async def _handle(self, texts: tuple[str, ...], now: float) -> None:
        outcome = self._debouncer.feed(texts, now)
        if outcome is None:
            return
        try:
            if isinstance(outcome, MultipleCodes):
                log.warning("camera: %d different codes in one frame (%s); none decided — %s / %s",
                            len(outcome.texts), ", ".join(_excerpt(t) for t in outcome.texts),
                            outcome.text_en, outcome.text_zh)
                if self.on_multiple is not None:
                    await self.on_multiple(outcome)
            else:
                await self.on_code(outcome)
        except Exception:
            log.exception("camera code handler failed; reading on")

    async def _pump(self, frames: Frames, worker: ThreadPoolExecutor) -> int:
        """Read until a finite source ends; return the number of frames read."""
        loop = asyncio.get_running_loop()
        interval = 1.0 / self.options.fps if self.options.fps > 0 else 0.0
        due = time.monotonic()
        count = 0
        while True:
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            due = max(due + interval, time.monotonic())
            texts = await loop.run_in_executor(worker, self._next, frames)
            if texts is None:
                return count
            count += 1
            self.frames_read += 1
            if self._health() != "ok":
                self._health.set("ok")
            await self._handle(texts, self.clock())

    async def run(self) -> None:
        """Read forever; reopen every ``reopen_delay`` seconds while the camera is gone (:mod:`confkit.reopen`).

        A video file or image folder stops at its end, or starts over when ``options.loop``.
        """
        opts = self.options
        loop = asyncio.get_running_loop()
        worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="camera")

        async def open_() -> Frames:
            return await loop.run_in_executor(worker, self.opener, opts)

        async def read(frames: Frames) -> Next | None:
            count = await self._pump(frames, worker)
            if count and opts.loop:
                return Next.REOPEN_NOW  # start the file or folder over; frames_read moved on
            if not opts.loop:
                log.info("camera source %s ended", opts.source)
                return Next.STOP
            # looping over nothing: an empty image folder is a camera with nothing in view (the
            # simulated camera between patrons); a video file that yields no frame is missing
            empty_folder = isinstance(opts.source, str) and await asyncio.to_thread(os.path.isdir, opts.source)
            self._health.set("ok" if empty_folder else "missing")
            return None

        try:
            await reopen_loop(f"camera {opts.source}", open_, read, self._health, retry=opts.reopen_delay,
                              lost=(CameraLost,), faults=True, ok_on_open=False,
                              close=lambda frames: worker.submit(frames.close),  # after any read still running
                              log=log)
        finally:
            self.connected.clear()
            worker.shutdown(wait=False)
