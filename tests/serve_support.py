"""A live ``extremefast serve`` for tests: in a thread of the test process, or as a separate process.

``start_server(data_dir, token=None, **kwargs) -> (base_url, stop)`` serves ``data_dir`` on 127.0.0.1 on a
free port (``kwargs`` go to :func:`extremefast.serve.create_app`) and returns once it answers; ``stop()``
shuts it down. ``start_server_process`` runs the real command (``python -m extremefast serve``) instead, for
tests that kill the server.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import tempfile
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(data_dir, token=None, **kwargs):
    """Serve ``data_dir`` in a thread; returns (``http://127.0.0.1:PORT``, stop)."""
    import uvicorn

    from extremefast.serve import create_app

    app = create_app(data_dir, token=token, **kwargs)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True, name=f"serve-{port}")
    thread.start()
    deadline = time.time() + 120
    while not server.started:
        if not thread.is_alive() or time.time() > deadline:
            raise RuntimeError(f"the server on port {port} did not start")
        time.sleep(0.05)

    def stop():
        server.should_exit = True
        thread.join(timeout=60)

    return f"http://127.0.0.1:{port}", stop


def start_server_process(data_dir, token=None, *args, env=None, before: str = ""):
    """``python -m extremefast serve`` on a free port; returns (base_url, Popen) once it listens.

    ``before``: Python run in the server's process before the command line (a test's patch)."""
    port = free_port()
    launcher = ["-m", "extremefast"] if not before else ["-c", f"{before}\nfrom extremefast.cli import entry\nentry()"]
    cmd = [sys.executable, *launcher, "serve", "--data", str(data_dir), "--port", str(port), *args]
    if token:
        cmd += ["--token", token]
    # the server's output goes to a file: a pipe nobody reads fills up (64 kB of access log) and
    # then blocks the server in the middle of a request
    log = tempfile.NamedTemporaryFile("w+", prefix="extremefast-serve-", suffix=".log", delete=False)
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ, COLUMNS="300", **(env or {})))
    proc.log_path = log.name
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited: {Path(log.name).read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return url, proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"the server on port {port} did not start")
