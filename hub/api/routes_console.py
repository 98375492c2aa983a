"""The staff web console: static HTML, JS and CSS from ``hub/static``, no build step, no external resources.

One HTML file per page (``/console`` is the log-in and the emergency board, ``/console/live``,
``/console/devices``, ``/console/boxoffice``, ``/console/reports``, ``/console/users``), ES modules and CSS
beside them (``/console/<name>.js``, ``.css``, ``.svg``). The pages talk to the same JSON API as every other
client (``/api/v1``) with a bearer token kept in ``sessionStorage``; these routes serve files only and need
no login. Which page a role sees is in ``hub/static/common.js`` (``PAGES``); the API checks the role again.
"""

from __future__ import annotations

import re
from pathlib import Path

from fastapi import APIRouter, HTTPException, Response
from fastapi.responses import FileResponse, RedirectResponse

STATIC = Path(__file__).resolve().parent.parent / "static"
PAGES = frozenset({"emergency", "live", "devices", "boxoffice", "reports", "users"})  # /console/<page> -> <page>.html
_TYPES = {
    "js": "text/javascript; charset=utf-8",
    "css": "text/css; charset=utf-8",
    "svg": "image/svg+xml",
}
_ASSET = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}\.(js|css|svg)$")
# Only our own files: no CDN, no inline script, nothing framed.
_HEADERS = {
    "Cache-Control": "no-cache",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
}

router = APIRouter(tags=["console"], include_in_schema=False)


@router.get("/")
def root() -> RedirectResponse:
    return RedirectResponse("/console")


def _page(name: str) -> FileResponse:
    return FileResponse(STATIC / f"{name}.html", media_type="text/html; charset=utf-8", headers=_HEADERS)


@router.get("/console")
def console_page() -> FileResponse:
    return _page("console")


@router.get("/console/{name}")
def console_file(name: str) -> FileResponse:
    if name in PAGES:
        return _page("console" if name == "emergency" else name)
    match = _ASSET.match(name)
    if match is None or not (STATIC / name).is_file():
        raise HTTPException(404, f"no console file {name!r}")
    return FileResponse(STATIC / name, media_type=_TYPES[match.group(1)], headers=_HEADERS)


@router.get("/favicon.ico")
def favicon() -> Response:
    return Response(status_code=204)
