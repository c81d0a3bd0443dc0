"""What ``extremefast serve`` needs besides the app: the bind rule and running uvicorn."""
from __future__ import annotations

import ipaddress
import socket

from ..errors import InputError


def is_loopback(host: str) -> bool:
    """Whether ``host`` only reaches this machine (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        try:
            return all(ipaddress.ip_address(info[4][0]).is_loopback for info in socket.getaddrinfo(host, None))
        except (OSError, ValueError):
            return False


def check_bind(host: str, token: str | None) -> None:
    """Refuse a non-loopback address without a token (one line)."""
    if not is_loopback(host) and not token:
        raise InputError(f"binding to {host} makes the server reachable from other machines; give --token TOKEN "
                         "(every request then needs 'Authorization: Bearer TOKEN')")


def url_of(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"


def run_server(data, *, host: str = "127.0.0.1", port: int = 8000, token: str | None = None, announce=print,
               **kwargs) -> None:
    """Start the app on uvicorn and block until it stops; ``announce(url)`` once it listens."""
    try:
        import uvicorn
    except ImportError:
        from ..errors import BackendUnavailable

        raise BackendUnavailable("the server needs uvicorn: pip install 'extremefast[serve]'") from None
    from . import create_app

    check_bind(host, token)
    app = create_app(data, token=token, **kwargs)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    original = server.startup

    async def startup(sockets=None):
        await original(sockets=sockets)
        if server.started:
            bound = port
            for srv in getattr(server, "servers", []):
                for sock in getattr(srv, "sockets", []) or []:
                    bound = sock.getsockname()[1]
            announce(url_of(host, bound) + (f"?token={token}" if token else ""))

    server.startup = startup
    server.run()
    if not server.started:
        from ..errors import DataError

        raise DataError(f"could not listen on {host}:{port} (in use, or no permission)")
