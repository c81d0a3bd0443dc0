"""The server's refusals, as toolkit errors; the app's one exception handler maps each to its status."""
from __future__ import annotations

from ..errors import ExtremefastError, InputError


class NotFound(InputError):
    """An id, a model, a run or a session the server does not have (404)."""


class Conflict(InputError):
    """The request collides with the server's state: a run is going, an id exists (409)."""


class Unauthorized(InputError):
    """A wrong token (401)."""


class TooLarge(InputError):
    """An upload over the size limit (413)."""


def status_code(exc: ExtremefastError) -> int:
    """The HTTP status of a toolkit error: 401, 404, 409, 413, else 400."""
    if isinstance(exc, Unauthorized):
        return 401
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, Conflict):
        return 409
    if isinstance(exc, TooLarge):
        return 413
    return 400


def one_line(exc: BaseException) -> str:
    """The error's message on one line (what the CLI prints after ``extremefast: error:``)."""
    return " ".join(str(exc).split()) or type(exc).__name__
