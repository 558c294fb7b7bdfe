"""The web page: ``GET /`` and its files under ``/static/``, from the package's own
``static`` folder (no build step, no network).

The folder is flat and only known kinds of file are served, so a name is one path
segment checked against a pattern: nothing outside the folder can be named, however the
path is encoded. Every answer carries a strict Content-Security-Policy (no inline script
or style, nothing from another origin) and the usual hardening headers. The files are
not fingerprinted, so browsers revalidate each one (``no-cache`` with an ETag) and an
upgrade is seen at the next load.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

STATIC = Path(__file__).parent / "static"

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".json": "application/json",
}
# One segment, no leading dot, a known extension: nothing else is a file of the page.
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*\.(html|js|css|svg|png|json)$")

CSP = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "font-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        # The page's forms are handled by script; should it fail to load, a native
        # submission would put the typed key into a URL, so none is allowed.
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}


@dataclass(frozen=True, slots=True)
class _File:
    body: bytes
    etag: str
    stamp: tuple[int, int]  # (mtime_ns, size) when read


_cache: dict[str, _File] = {}


def _read(name: str) -> _File | None:
    """The file *name* of the static folder, read again only when it changed."""
    path = STATIC / name
    try:
        stat = path.stat()
    except OSError:
        return None
    if not path.is_file():
        return None
    stamp = (stat.st_mtime_ns, stat.st_size)
    cached = _cache.get(name)
    if cached is not None and cached.stamp == stamp:
        return cached
    body = path.read_bytes()
    digest = hashlib.sha256(body).hexdigest()[:32]
    found = _File(body, f'"{digest}"', stamp)
    _cache[name] = found
    return found


def _serve(request: Request, name: str) -> Response:
    if not _NAME.match(name):
        raise HTTPException(404)
    found = _read(name)
    if found is None:
        raise HTTPException(404)
    headers = {**SECURITY_HEADERS, "Cache-Control": "no-cache", "ETag": found.etag}
    if found.etag in _etags(request.headers.get("if-none-match", "")):
        return Response(status_code=304, headers=headers)
    media_type = CONTENT_TYPES[Path(name).suffix]
    body = b"" if request.method == "HEAD" else found.body
    response = Response(body, headers=headers, media_type=media_type)
    if request.method == "HEAD":
        response.headers["Content-Length"] = str(len(found.body))
    return response


def _etags(header: str) -> set[str]:
    return {tag.strip().removeprefix("W/") for tag in header.split(",") if tag.strip()}


async def index(request: Request) -> Response:
    """``GET /``: the page."""
    return _serve(request, "index.html")


async def static_file(request: Request) -> Response:
    """``GET /static/{name}``: one file of the page."""
    return _serve(request, request.path_params["name"])


ROUTES: list[BaseRoute] = [
    Route("/", index, methods=["GET", "HEAD"]),
    # `:path` so that a name with a slash reaches the check (and its 404) here.
    Route("/static/{name:path}", static_file, methods=["GET", "HEAD"]),
]
