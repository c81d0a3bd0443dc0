"""``/datastore/``: the collection, its scans, accepted masks and clicks (MONAI Label's, with extras)."""
from __future__ import annotations

import tempfile
from enum import Enum
from pathlib import Path
from typing import Optional

from fastapi import APIRouter, Body, Depends, File, Form, Response, UploadFile
from pydantic import BaseModel, ConfigDict

from ...errors import InputError
from ..datastore import LABEL_UPLOADS, check_id, upload_id, upload_suffix
from ..errors import NotFound
from ..models import WALKER, six_points
from ._deps import copy_upload, file_response, get_server, media_type, parse_params

router = APIRouter(prefix="/datastore", tags=["Datastore"])


class Output(str, Enum):
    all = "all"
    stats = "stats"
    train = "train"


class ClicksBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    clicks: list[list[float]]


class AcceptBody(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())
    model: str = WALKER
    clicks: Optional[list[list[float]]] = None


@router.get("/")
def datastore(output: Optional[Output] = None, server=Depends(get_server)):
    ds = server.datastore
    if output == Output.all:
        return ds.monai_json()
    if output == Output.train:
        return ds.train_list()
    return ds.stats()


@router.get("/cases")
def cases(server=Depends(get_server)):
    return server.datastore.listing()


def _add_image(server, image: Optional[str], params: str, file: UploadFile) -> dict:
    parse_params(params)
    suffix = upload_suffix(file.filename)
    image_id = check_id(image) if image else check_id(upload_id(file.filename), "the uploaded file's name")
    server.datastore.add_scan(image_id, lambda tmp: copy_upload(file, tmp, server.max_upload_bytes), suffix)
    return {"image": image_id}


@router.put("/")
def add_image_legacy(image: Optional[str] = None, params: str = Form("{}"), file: UploadFile = File(...),
                     server=Depends(get_server)):
    return _add_image(server, image, params, file)


@router.put("/image")
def add_image(image: Optional[str] = None, params: str = Form("{}"), file: UploadFile = File(...),
              server=Depends(get_server)):
    return _add_image(server, image, params, file)


@router.head("/image")
def check_image(image: str, server=Depends(get_server)):
    server.datastore.case(image)
    return Response(status_code=200)


@router.get("/image")
def download_image(image: str, server=Depends(get_server)):
    data, name = server.datastore.image_file(image)
    return file_response(data, name, media_type(name))


def _check_tag(tag: Optional[str]) -> None:
    if tag not in (None, "", "final"):
        raise InputError(f"label tag {tag!r} is not kept; this datastore keeps the accepted mask (tag final)")


@router.get("/label")
def download_label(label: str, tag: str = "final", server=Depends(get_server)):
    _check_tag(tag)
    data, name = server.datastore.label_file(label)
    return file_response(data, name, media_type(name))


@router.head("/label")
def check_label(image: str, tag: str = "final", server=Depends(get_server)):
    _check_tag(tag)
    if not server.datastore.has_mask(image):
        raise NotFound(f"{image} has no accepted mask")
    return Response(status_code=200)


@router.put("/label")
def save_label(image: str, tag: str = "final", params: str = Form("{}"), label: UploadFile = File(...),
               server=Depends(get_server)):
    _check_tag(tag)
    parse_params(params)
    ds = server.datastore
    ds.case(image)
    suffix = upload_suffix(label.filename, LABEL_UPLOADS, default=".nii.gz")
    with tempfile.TemporaryDirectory(dir=ds.state_dir) as tmpdir:
        tmp = Path(tmpdir) / f"label{suffix}"
        copy_upload(label, tmp, server.max_upload_bytes)
        mask = ds.check_label(image, tmp)
    path = ds.save_mask(image, mask)
    return {"image": image, "label": image, "file": path.name, "status": "accepted", "voxels": int(mask.sum())}


@router.delete("/label")
def remove_label(id: str, tag: str = "final", server=Depends(get_server)):
    _check_tag(tag)
    server.datastore.delete_mask(id)
    return {}


def _clicks(server, image: str) -> dict:
    ds = server.datastore
    path = ds.clicks_file(image)
    clicks = ds.read_clicks(image)
    return {"image": image, "clicks": None if clicks is None else clicks.tolist(),
            "file": path.name if path is not None else None}


@router.get("/clicks")
def get_clicks(image: str, server=Depends(get_server)):
    return _clicks(server, image)


@router.put("/clicks")
def put_clicks(image: str, body: ClicksBody, server=Depends(get_server)):
    ds = server.datastore
    ds.save_clicks(image, six_points(body.clicks, ds.scan(image)))
    return _clicks(server, image)


@router.delete("/clicks")
def delete_clicks(image: str, server=Depends(get_server)):
    server.datastore.delete_clicks(image)
    return {"image": image, "clicks": None, "file": None}


@router.post("/accept")
def accept(image: str, body: Optional[AcceptBody] = Body(None), server=Depends(get_server)):
    body = body or AcceptBody()
    return server.accept(image, body.model, body.clicks)


@router.get("/masks.zip")
def masks_zip(server=Depends(get_server)):
    return file_response(server.datastore.masks_zip(), f"{server.datastore.root.name}_masks.zip", "application/zip")
