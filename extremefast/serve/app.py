"""The FastAPI application: the routers, the token check, the one error handler, the start-up work."""
from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import OrderedDict
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

import numpy as np

from .. import __version__
from ..errors import DataError, ExtremefastError, InputError
from .datastore import Datastore, Scan, check_id
from .errors import NotFound, one_line, status_code
from .guard import Guard
from .models import MODEL, WALKER, Result, TrainedModel, Walker, six_points, unknown_model
from .models import infer as run_model
from .training import TrainingRuns

log = logging.getLogger("extremefast.serve")
STATIC_DIR = Path(__file__).with_name("static")
DEFAULT_MAX_UPLOAD_MB = 1024


class Server:
    """What the routes work with: the datastore, the models, the training runs, the sessions."""

    def __init__(self, data_dir, *, max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB, cache_size: int = 8,
                 device: str = "cpu", warm: bool = True, resume_runs: bool = True, static_dir=None):
        self.datastore = Datastore(data_dir, cache_size=cache_size)
        self.max_upload_bytes = int(max_upload_mb * 1024 * 1024)
        self.device = device
        self.warm = warm
        self.resume_runs = resume_runs
        self.static_dir = Path(static_dir) if static_dir is not None else STATIC_DIR
        self.walker = Walker(self.datastore.modality)
        self.model: TrainedModel | None = None
        self._model_lock = threading.Lock()
        self.runs = TrainingRuns(self.datastore, on_finished=self.load_model)
        self.token: str | None = None
        self.sessions: dict[str, dict] = {}
        self._results: OrderedDict[str, tuple] = OrderedDict()  # case -> (clicks, model, oriented mask): accept
        self._results_lock = threading.Lock()

    # ------------------------------------------------------------------ start and end
    def start(self) -> None:
        if self.warm:
            seconds = self.walker.warm()
            log.info("walker kernels compiled in %.1f s", seconds)
        run_dir = self.runs.finished_model()
        if run_dir is not None:
            try:
                self.load_model(run_dir)
            except ExtremefastError as exc:
                log.warning("the model of run %s is not loaded: %s", run_dir.name, one_line(exc))
        if self.resume_runs:
            self.runs.recover(log=log.warning)

    def stop(self) -> None:
        self.runs.shutdown()

    def load_model(self, run_dir: Path) -> None:
        """(Re)load ``extreme_points_model`` from a run of this server (never from elsewhere)."""
        run_dir = Path(run_dir).resolve()
        if run_dir.parent != self.runs.dir.resolve():
            raise DataError(f"{run_dir}: not a training run of this server")
        model = TrainedModel(run_dir / "model.pt", run_dir.name, self.device)
        with self._model_lock:
            self.model = model
        with self._results_lock:
            self._results.clear()
        log.info("extreme_points_model loaded from run %s", run_dir.name)

    # ------------------------------------------------------------------ lookups
    def models(self) -> dict:
        found = {WALKER: self.walker}
        if self.model is not None:
            found[MODEL] = self.model
        return found

    def get_model(self, name: str):
        models = self.models()
        if name not in models:
            raise unknown_model(name, models)
        return models[name]

    def session(self, session_id: str) -> dict:
        check_id(session_id, "session id")
        found = self.sessions.get(session_id)
        if found is None or found["expires"] < time.time():
            self.sessions.pop(session_id, None)
            raise NotFound(f"session {session_id!r} not found (expired or never made)")
        return found

    def add_session(self, scan: Scan, name: str, path: Path, expiry: int) -> dict:
        for old in [k for k, v in list(self.sessions.items()) if v["expires"] < time.time()]:
            self.sessions.pop(old, None)
        session_id = uuid.uuid4().hex
        expiry = int(expiry) if expiry and expiry > 0 else 3600
        info = {"name": name, "image": path.name, "shape": list(scan.file_shape), "expiry": expiry,
                "last_access_ts": int(time.time())}
        self.sessions[session_id] = {"scan": scan, "info": info, "path": path, "expires": time.time() + expiry}
        return {"session_id": session_id, "session_info": info}

    # ------------------------------------------------------------------ inference and accepting
    def infer(self, model_name: str, image: str, session_id: str, request: dict) -> tuple[Result, str]:
        """Run a model on a case (its clicks saved unless ``save_clicks`` is false) or a session's scan;
        returns the result and the mask's file name."""
        model = self.get_model(model_name)
        t0 = time.perf_counter()
        if session_id:
            scan, case_id = self.session(session_id)["scan"], None
        elif image:
            scan, case_id = self.datastore.scan(image), image
        else:
            raise InputError("give the scan's id (?image=ID) or a session (?session_id=...)")
        load = time.perf_counter() - t0
        result = run_model(model, scan, request.get("foreground", request.get("clicks")), self.datastore.labels)
        result.params["seconds"]["load"] = load
        saved = case_id is not None and result.params["complete"]
        if saved:
            self._remember(case_id, result.params["clicks"], model.name, result.mask_oriented)
            saved = request.get("save_clicks", True) is not False
            if saved:
                self.datastore.save_clicks(case_id, result.params["clicks"])
        result.params["clicks_saved"] = saved
        return result, f"{scan.name}.nii.gz"

    def accept(self, image: str, model_name: str, clicks=None) -> dict:
        """Save the mask of six clicks (given, else the saved ones) as the case's accepted mask."""
        model = self.get_model(model_name)
        scan = self.datastore.scan(image)
        given = clicks is not None
        if not given:
            clicks = self.datastore.read_clicks(image)
            if clicks is None:
                raise InputError(f"{image} has no saved clicks; place six first")
            clicks = clicks.tolist()
        file_pts = six_points(clicks, scan)
        mask = self._recall(image, model.name, file_pts)
        if mask is None:
            mask = run_model(model, scan, file_pts.tolist(), self.datastore.labels).mask_oriented
        path = self.datastore.save_mask(image, mask)
        if given:
            self.datastore.save_clicks(image, file_pts)
        return {"image": image, "label": image, "file": path.name, "status": "accepted", "voxels": int(mask.sum()),
                "model": model.name}

    def _remember(self, case_id: str, clicks, model_name: str, mask) -> None:
        with self._results_lock:
            self._results.pop(case_id, None)
            self._results[case_id] = (np.asarray(clicks), model_name, mask)
            while len(self._results) > 8:  # the latest cases only
                self._results.popitem(last=False)

    def _recall(self, case_id: str, model_name: str, clicks: np.ndarray):
        """The mask just inferred from the same clicks (in any order) with the same model, or None."""
        with self._results_lock:
            found = self._results.get(case_id)
        if found is None or found[1] != model_name:
            return None
        same = np.array_equal(np.sort(found[0], axis=0), np.sort(np.asarray(clicks), axis=0))
        return found[2] if same else None

    def info(self) -> dict:
        labels = self.datastore.labels
        models = {WALKER: {"type": "deepgrow", "dimension": 3, "labels": labels, "description": self.walker.description,
                           "config": {}}}
        if self.model is not None:
            models[MODEL] = {"type": "deepgrow", "dimension": 3, "labels": labels,
                             "description": self.model.description, "config": {}, "run": self.model.run_id}
        try:
            last = self.runs.status()
        except NotFound:
            last = {}
        return {"name": "extremefast", "description": "Six extreme-point clicks -> a mask (random walker, or the "
                "network trained on this collection's clicks)", "version": __version__, "labels": labels,
                "models": models,
                "trainers": {MODEL: {"description": "The weakly supervised scheme on the clicks so far "
                                                    "(extremefast train --points)",
                                     "config": {}}},
                "strategies": {"first": {"type": "first", "description": "The first scan without an accepted mask"},
                               "random": {"type": "random", "description": "A random scan without an accepted mask"}},
                "scoring": {}, "train_stats": {MODEL: last} if last else {},
                "datastore": self.datastore.stats()}


def create_app(data_dir, *, token: str | None = None, max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
               cache_size: int = 8, device: str = "cpu", warm: bool = True, resume_runs: bool = True,
               static_dir=None) -> FastAPI:
    """The annotation server for the collection in ``data_dir`` (REST contract: ``API.md``).

    Parameters
    ----------
    data_dir : path
        A folder of scans (or an MSD layout): the datastore.
    token : str, optional
        Require ``Authorization: Bearer TOKEN`` on every request.
    max_upload_mb : float
        Largest scan or label upload.
    cache_size : int
        Scans kept in memory.
    device : {"cpu", "cuda", "auto"}
        Where ``extreme_points_model`` runs.
    warm : bool
        Compile the walker's kernels at start-up (one tiny pseudo label).
    resume_runs : bool
        At start-up, follow or resume a training run the last server left.
    static_dir : path, optional
        The built page (default: ``extremefast/serve/static``).
    """
    from .routes import activelearning, auth, datastore, infer, info, page, session, train

    server = Server(data_dir, max_upload_mb=max_upload_mb, cache_size=cache_size, device=device, warm=warm,
                    resume_runs=resume_runs, static_dir=static_dir)
    server.token = token or None

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        server.start()
        try:
            yield
        finally:
            server.stop()

    app = FastAPI(title="extremefast", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Six extreme-point clicks -> a mask; MONAI Label's REST protocol (see API.md).")
    app.state.server = server
    for module in (info, auth, datastore, activelearning, infer, session, train, page):
        app.include_router(module.router)

    @app.exception_handler(ExtremefastError)
    async def _known_error(request: Request, exc: ExtremefastError):
        return JSONResponse({"detail": one_line(exc)}, status_code=status_code(exc))

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(request: Request, exc: RequestValidationError):
        parts = []
        for err in exc.errors():
            where = " ".join(str(x) for x in err.get("loc", ()) if x not in ("body",))
            parts.append(f"{where}: {err.get('msg', 'invalid')}" if where else str(err.get("msg", "invalid")))
        return JSONResponse({"detail": "; ".join(parts) or "invalid request"}, status_code=422)

    app.add_middleware(Guard, token=server.token, max_body=server.max_upload_bytes)
    return app
