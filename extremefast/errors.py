"""Errors that users can act on.

Everything the toolkit refuses on purpose raises a subclass of :class:`ExtremefastError`.
The command line turns these (and nothing else) into a one-line message and exit code 1.
"""


class ExtremefastError(Exception):
    """Base class of the errors the toolkit raises on purpose."""


class InputError(ExtremefastError, ValueError):
    """An argument or an array is not acceptable (shape, dtype, values, range)."""


class DataError(ExtremefastError):
    """A file or data set is missing, unreadable or inconsistent."""


class BackendUnavailable(ExtremefastError, RuntimeError):
    """A backend was asked for explicitly but is not installed or has no device."""
