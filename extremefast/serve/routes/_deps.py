"""What the routes share: the server, uploads with a size limit, JSON params, multipart answers."""
from __future__ import annotations

import json
import uuid

from fastapi import Request, Response

from ...errors import InputError
from ..errors import TooLarge

_CHUNK = 1 << 20


def get_server(request: Request):
    return request.app.state.server


def parse_params(text: str | None, what: str = "params") -> dict:
    """A JSON object from a form field; a one-line refusal when it is not one."""
    if text is None or not str(text).strip():
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{what} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InputError(f"{what} must be a JSON object, got {type(value).__name__}")
    return value


def copy_upload(upload, path, limit: int) -> int:
    """Copy an uploaded file to ``path``, refusing it past ``limit`` bytes."""
    total = 0
    upload.file.seek(0)
    with open(path, "wb") as out:
        while True:
            chunk = upload.file.read(_CHUNK)
            if not chunk:
                break
            total += len(chunk)
            if total > limit:
                raise TooLarge(f"upload larger than the limit of {limit // (1024 * 1024)} MB")
            out.write(chunk)
    if total == 0:
        raise InputError("the uploaded file is empty")
    return total


def multipart(params: dict, filename: str, data: bytes, media_type: str = "application/gzip") -> Response:
    """``params`` and one file as MONAI Label's infer answers (what ``MONAILabelClient.infer`` parses)."""
    boundary = uuid.uuid4().hex
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"params\"\r\n"
            f"Content-Type: application/json\r\n\r\n{json.dumps(params)}\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{filename}\"\r\n"
            f"Content-Type: {media_type}\r\n\r\n").encode()
    body = head + data + f"\r\n--{boundary}--\r\n".encode()
    return Response(body, media_type=f"multipart/form-data; boundary={boundary}")


def file_response(data: bytes, filename: str, media_type: str = "application/octet-stream") -> Response:
    return Response(data, media_type=media_type, headers={"Content-Disposition": f'attachment; filename="{filename}"'})


def media_type(name: str) -> str:
    return "application/gzip" if name.endswith(".gz") else "application/octet-stream"


__all__ = ["get_server", "parse_params", "copy_upload", "multipart", "file_response", "media_type"]
