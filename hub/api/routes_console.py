"""The staff web console: static HTML, JS and CSS from ``hub/static``, no build step, no external resources.

The page talks to the same JSON API as every other client (``/api/v1``) with a bearer token it keeps in
``sessionStorage``; these routes serve files only and need no login.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException, Response
from fastapi.responses import FileResponse, RedirectResponse

STATIC = Path(__file__).resolve().parent.parent / "static"
_FILES = {
    "console.js": "text/javascript; charset=utf-8",
    "console.css": "text/css; charset=utf-8",
}
# Only our own files: no CDN, no inline script, nothing framed.
_HEADERS = {
    "Cache-Control": "no-cache",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
}

router = APIRouter(tags=["console"], include_in_schema=False)


@router.get("/")
def root() -> RedirectResponse:
    return RedirectResponse("/console")


@router.get("/console")
def console_page() -> FileResponse:
    return FileResponse(STATIC / "console.html", media_type="text/html; charset=utf-8", headers=_HEADERS)


@router.get("/console/{name}")
def console_asset(name: str) -> FileResponse:
    media_type = _FILES.get(name)
    if media_type is None:
        raise HTTPException(404, f"no console file {name!r}")
    return FileResponse(STATIC / name, media_type=media_type, headers=_HEADERS)


@router.get("/favicon.ico")
def favicon() -> Response:
    return Response(status_code=204)
