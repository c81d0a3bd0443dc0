"""``/``: the browser page (built into ``extremefast/serve/static`` by ``cd web && npm ci && npm run build``)."""
from __future__ import annotations

import mimetypes

from fastapi import APIRouter, Depends
from fastapi.responses import FileResponse

from ..errors import NotFound
from ._deps import get_server

router = APIRouter(tags=["Page"])
_BUILD = "the page is not built: cd web && npm ci && npm run build"


@router.get("/", include_in_schema=False)
def index(server=Depends(get_server)):
    page = server.static_dir / "index.html"
    if not page.is_file():
        raise NotFound(_BUILD)
    return FileResponse(page, media_type="text/html")


@router.get("/static/{path:path}", include_in_schema=False)
def static(path: str, server=Depends(get_server)):
    root = server.static_dir.resolve()
    target = (root / path.replace("\0", "")).resolve()
    if "\0" in path or root not in target.parents or not target.is_file():
        raise NotFound(f"no page file {path!r}" if root.is_dir() else _BUILD)
    media = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
    if target.suffix in (".js", ".mjs"):
        media = "text/javascript"
    return FileResponse(target, media_type=media)
