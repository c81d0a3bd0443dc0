"""``extremefast serve``: the annotation server (MONAI Label's REST protocol, a browser page, training in the loop).

The REST contract is ``API.md`` beside this file. The library parts (:class:`Datastore`, the inference
models, the training runs) import without FastAPI; :func:`create_app` needs the ``[serve]`` extra.
"""
from __future__ import annotations

from ..errors import BackendUnavailable


def create_app(data_dir, *, token=None, **kwargs):
    """The FastAPI application serving the collection in ``data_dir`` (see :func:`.app.create_app`)."""
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
        from importlib.util import find_spec

        if find_spec("python_multipart") is None and find_spec("multipart") is None:
            raise ImportError("python-multipart")
    except ImportError:
        raise BackendUnavailable("the server needs FastAPI: pip install 'extremefast[serve]'") from None
    from .app import create_app as _create_app

    return _create_app(data_dir, token=token, **kwargs)


__all__ = ["create_app"]
