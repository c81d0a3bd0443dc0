"""``POST /infer/{model}``: six clicks (``params["foreground"]``) -> the mask, as MONAI Label answers."""
from __future__ import annotations

import time
from enum import Enum
from typing import Optional

from fastapi import APIRouter, Depends, File, Form, UploadFile

from ...errors import InputError
from ..datastore import encode_nifti
from ..models import WALKER
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
    if file is not None:
        raise InputError("send the scan with PUT /session/ (or add it with PUT /datastore/image) and infer on its id")
    result, filename = server.infer(model, image, session_id, request)
    if output == Output.json:
        return result.params
    t = time.perf_counter()
    data = encode_nifti(result.mask, result.affine)
    result.params["seconds"]["encode"] = time.perf_counter() - t
    if output == Output.image:
        return file_response(data, filename, "application/gzip")
    return multipart(result.params, filename, data)


@router.post("/")
def infer_without_model(image: str = "", session_id: str = "", params: str = Form("{}"),
                        output: Optional[Output] = None, server=Depends(get_server)):
    """No model named: 3D Slicer's "auto-segment on next sample" sends this when the app has no segmentation
    model. The walker's answer to no clicks (an empty mask, "0 of 6 extreme points") rather than an error
    box; it also brings the scan into memory for the clicks to come."""
    return infer(WALKER, image, session_id, params, output, None, None, server)
