"""``/session/``: a scan that is not in the collection, uploaded for inference (MONAI Label's sessions)."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from fastapi import APIRouter, Depends, File, UploadFile

from ...errors import InputError
from ..datastore import check_scan, safe_name, upload_id, upload_suffix
from ._deps import copy_upload, get_server

router = APIRouter(prefix="/session", tags=["Session"])


@router.put("/")
def create_session(expiry: int = 0, uncompress: bool = False, files: list[UploadFile] = File(...),
                   server=Depends(get_server)):
    if len(files) != 1:
        raise InputError(f"a session holds one scan file, got {len(files)} files")
    upload = files[0]
    suffix = upload_suffix(upload.filename)
    folder = Path(tempfile.mkdtemp(prefix="session-", dir=server.datastore.state_dir))
    try:
        path = folder / f"scan{suffix}"
        copy_upload(upload, path, server.max_upload_bytes)
        name = safe_name(upload_id(upload.filename))  # it names the masks sent back
        scan = check_scan(path, name)
    finally:
        shutil.rmtree(folder, ignore_errors=True)  # the scan lives in memory for the session
    return server.add_session(scan, name, path, expiry)


@router.get("/{session_id}")
def get_session(session_id: str, server=Depends(get_server)):
    return server.session(session_id)["info"]


@router.delete("/{session_id}")
def remove_session(session_id: str, server=Depends(get_server)):
    info = server.session(session_id)["info"]
    server.sessions.pop(session_id, None)
    return info
