"""Synthetic 640x480 camera frames of QR tickets (segno + OpenCV), for the camera tests and bench.

    >>> frame = phone_photo(token_text, np.random.default_rng(1))   # uint8, shape (480, 640)
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import segno

W, H = 640, 480


def qr_tile(text: str, module_px: int = 4, border: int = 4) -> np.ndarray:
    """Black-on-white QR of ``text`` (ECC M), ``module_px`` pixels per module, with a quiet zone."""
    qr = segno.make(text, error="m", micro=False, boost_error=False)
    modules = np.pad(np.array([list(row) for row in qr.matrix], dtype=np.uint8), border)
    img = np.where(modules == 1, 0, 255).astype(np.uint8)
    return np.kron(img, np.ones((module_px, module_px), np.uint8))


def background(rng: np.random.Generator) -> np.ndarray:
    """A textured "room": smoothed random noise, mid grey."""
    return cv2.GaussianBlur(rng.integers(60, 200, (H, W), dtype=np.uint8), (0, 0), 8)


def _paste(frame: np.ndarray, tile: np.ndarray, cx: int, cy: int) -> None:
    th, tw = tile.shape
    y0, x0 = cy - th // 2, cx - tw // 2
    frame[y0:y0 + th, x0:x0 + tw] = tile


def printed_ticket(text: str, rng: np.random.Generator) -> np.ndarray:
    """A thermal paper ticket lying on a textured surface: paper, printed lines, the code."""
    frame = background(rng)
    cv2.rectangle(frame, (150, 20), (490, 460), 235, thickness=-1)
    cv2.putText(frame, "THEATRE  ROW 7 SEAT 12", (165, 52), cv2.FONT_HERSHEY_SIMPLEX, 0.6, 40, 2)
    cv2.putText(frame, "2031-05-01 19:30", (165, 440), cv2.FONT_HERSHEY_SIMPLEX, 0.6, 40, 2)
    _paste(frame, qr_tile(text), W // 2, H // 2)
    return frame


def _warp(frame: np.ndarray, angle: float, persp: float) -> np.ndarray:
    rot = cv2.getRotationMatrix2D((W / 2, H / 2), angle, 1.0)
    frame = cv2.warpAffine(frame, rot, (W, H), borderMode=cv2.BORDER_REPLICATE)
    src = np.float32([[0, 0], [W, 0], [W, H], [0, H]])  # type: ignore[arg-type]
    d = persp * W
    dst = np.float32([[d, d * 0.5], [W - d * 0.3, 0], [W, H], [d * 0.6, H - d * 0.4]])  # type: ignore[arg-type]
    return cv2.warpPerspective(frame, cv2.getPerspectiveTransform(src, dst), (W, H),
                               borderMode=cv2.BORDER_REPLICATE)


def _camera(frame: np.ndarray, rng: np.random.Generator, *, blur: float, noise: float, jpeg: int) -> np.ndarray:
    frame = cv2.GaussianBlur(frame, (0, 0), blur)
    noisy = frame.astype(np.float32) + rng.normal(0, noise, frame.shape)
    frame = np.clip(noisy, 0, 255).astype(np.uint8)
    ok, enc = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, jpeg])
    assert ok
    return cv2.imdecode(enc, cv2.IMREAD_GRAYSCALE)


def phone_photo(text: str, rng: np.random.Generator, *, dark: bool = False) -> np.ndarray:
    """A phone held up to the camera: body, screen, code; rotated, tilted, blurred, noisy, JPEG'd.

    ``dark`` draws a dark-mode screen: light modules on a black screen (the inverted code).
    """
    frame = background(rng)
    cv2.rectangle(frame, (175, 0), (465, 480), 25, thickness=-1)  # phone body
    screen = 10 if dark else 245
    cv2.rectangle(frame, (185, 10), (455, 470), screen, thickness=-1)
    tile = qr_tile(text)
    _paste(frame, 255 - tile if dark else tile, W // 2, H // 2)
    frame = _warp(frame, angle=11.0, persp=0.08)
    return _camera(frame, rng, blur=1.0, noise=8.0, jpeg=70)


def two_tickets(text_a: str, text_b: str, rng: np.random.Generator) -> np.ndarray:
    """Two different codes side by side in one frame."""
    frame = background(rng)
    tile_a, tile_b = qr_tile(text_a, 3), qr_tile(text_b, 3)
    _paste(frame, tile_a, W // 4 + 10, H // 2)
    _paste(frame, tile_b, 3 * W // 4 - 10, H // 2)
    return frame


def write_folder(folder: Path, frames: list[np.ndarray], start: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames, start):
        assert cv2.imwrite(str(folder / f"f_{i:04d}.png"), frame)


def write_video(path: Path, frames: list[np.ndarray], fps: float = 30.0) -> Path:
    """An MJPG .avi of ``frames`` (the wheel's FFMPEG cannot write H.264)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (W, H))
    assert writer.isOpened(), "VideoWriter MJPG/.avi did not open"
    try:
        for frame in frames:
            writer.write(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR))
    finally:
        writer.release()
    return path
