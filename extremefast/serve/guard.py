"""The server's door: what every request passes before a route sees it.

One ASGI middleware, in this order:

1. **Body size.** A request body larger than the upload limit is refused while it streams (413), from its
   ``Content-Length`` at once or, without one, as soon as the bytes read pass the limit; nothing larger is
   spooled to disk first.
2. **Cross-origin writes and DNS rebinding.** A request that a browser marks with an ``Origin`` other than
   the server's own is refused (403): a web page elsewhere cannot make the annotator's browser start a run or
   overwrite a mask. Without a token, the ``Host`` must name this machine (``localhost``, a loopback address,
   its host name), so a foreign domain that resolves to 127.0.0.1 reaches nothing.
3. **The token.** With ``--token``, every request needs ``Authorization: Bearer TOKEN`` (or ``?token=TOKEN``)
   except MONAI Label's two login calls (``GET /auth/``, ``POST /auth/token``), through which 3D Slicer
   asks for the bearer token (its user name is free, its password is the token).
"""
from __future__ import annotations

import hmac
import ipaddress
import socket
from urllib.parse import parse_qs, urlsplit

from fastapi import HTTPException
from fastapi.responses import JSONResponse

OPEN_PATHS = ("/auth/", "/auth/token")  # how 3D Slicer learns that a token is needed, and sends it
SLACK = 1 << 20  # multipart headers and the params field around an upload


def token_matches(given: str | bytes, token: str | None) -> bool:
    """Timing-safe comparison of a presented credential with the server's token."""
    if token is None:
        return True
    given = given.encode() if isinstance(given, str) else given
    return hmac.compare_digest(given, token.encode())


def _header(scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return value
    return None


def _bearer(scope) -> bytes:
    value = _header(scope, b"authorization") or b""
    if value[:7].lower() == b"bearer ":
        return value[7:].strip()
    query = parse_qs(scope.get("query_string", b"").decode(errors="replace"))
    return (query.get("token") or [""])[0].encode()


def _local_names() -> set[str]:
    names = {"localhost"}
    for name in (socket.gethostname(), socket.getfqdn()):
        names.add(name.lower())
    return names


def is_local_host(host: str, names: set[str]) -> bool:
    """Whether a ``Host`` header's name (port and brackets stripped) names this machine."""
    host = host.lower()
    if host in names or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _split_host(value: str) -> str:
    return urlsplit(f"//{value}").hostname or ""


class Guard:
    """The middleware (see the module's text): ``token`` None leaves the token check out."""

    def __init__(self, app, *, token: str | None, max_body: int):
        self.app = app
        self.token = token
        self.max_body = int(max_body) + SLACK
        self.local_names = _local_names()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        refusal = self.refusal(scope)
        if refusal is not None:
            status, detail = refusal
            headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
            return await JSONResponse({"detail": detail}, status_code=status, headers=headers)(scope, receive, send)
        return await self.app(scope, self._limited(receive), send)

    def refusal(self, scope) -> tuple[int, str] | None:
        """(status, one line) when the request is refused at the door, else None."""
        host = (_header(scope, b"host") or b"").decode("latin-1")
        origin = (_header(scope, b"origin") or b"").decode("latin-1")
        if origin and urlsplit(origin).netloc.lower() != host.lower():
            return 403, f"cross-origin request from {origin} refused; open the page from this server"
        if self.token is None and host and not is_local_host(_split_host(host), self.local_names):
            return 403, (f"host {host!r} is not this machine; a server without --token answers only at "
                         "localhost or a loopback address")
        length = _header(scope, b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body:
            return 413, self._too_large_message()
        if self.token is not None and scope.get("path") not in OPEN_PATHS \
                and not token_matches(_bearer(scope), self.token):
            return 401, "missing or wrong bearer token"
        return None

    def _too_large_message(self) -> str:
        return f"upload larger than the limit of {(self.max_body - SLACK) // (1024 * 1024)} MB (--max-upload-mb)"

    def _limited(self, receive):
        seen = 0

        async def counted():
            nonlocal seen
            message = await receive()
            if message.get("type") == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    raise HTTPException(413, self._too_large_message())  # FastAPI passes it on as it is
            return message

        return counted
