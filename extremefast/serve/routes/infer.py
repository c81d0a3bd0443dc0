"""``POST /infer/{model}``: six clicks (``params["foreground"]``) -> the mask, as MONAI Label answers."""
from __future__ import annotations

import time
from enum import Enum
from typing import Optional

from fastapi import APIRouter, Depends, File, Form, UploadFile

from ...errors import InputError
from ..models import encode_nifti, infer as run_infer
from ._deps import file_response, get_server, multipart, parse_params

router = APIRouter(prefix="/infer", tags=["Infer"])


class Output(str, Enum):
    image = "image"
    json = "json"
    all = "all"


@router.post("/{model}")
def infer(model: str, image: str = "", session_id: str = "", params: str = Form("{}"),
          output: Optional[Output] = None, file: Optional[UploadFile] = File(None),
          label: Optional[UploadFile] = File(None), server=Depends(get_server)):
    request = parse_params(params)
    chosen = server.get_model(model)
    if file is not None:
        raise InputError("send the scan with PUT /session/ (or add it with PUT /datastore/image) and infer on its id")
    t0 = time.perf_counter()
    if session_id:
        scan = server.session(session_id)["scan"]
        name, case_id = scan.name, None
    else:
        if not image:
            raise InputError("give the scan's id (?image=ID) or a session (?session_id=...)")
        scan = server.datastore.scan(image)
        name, case_id = image, image
    t1 = time.perf_counter()
    raw = request.get("foreground", request.get("clicks"))
    result = run_infer(chosen, scan, raw, server.datastore.labels)
    params_out = result.params
    saved = False
    if case_id is not None and params_out["complete"]:
        server.last_results.pop(case_id, None)
        server.last_results[case_id] = (result.params["clicks"], chosen.name, result.mask_oriented)
        while len(server.last_results) > 8:  # the latest cases only (accept reuses them)
            server.last_results.pop(next(iter(server.last_results)))
        if request.get("save_clicks", True) is not False:
            server.datastore.save_clicks(case_id, result.params["clicks"])
            saved = True
    params_out["clicks_saved"] = saved
    t2 = time.perf_counter()
    data = b"" if output == Output.json else encode_nifti(result.mask, result.affine)
    seconds = params_out.setdefault("seconds", {})
    seconds.update(load=t1 - t0, encode=time.perf_counter() - t2)
    if output == Output.json:
        return params_out
    filename = f"{name}.nii.gz"
    if output == Output.image:
        return file_response(data, filename, "application/gzip")
    return multipart(params_out, filename, data)
