"""``/train/``: the scheme on the clicks so far, in a separate process; its status, log and stop."""
from __future__ import annotations

from typing import Any, Literal, Optional

from fastapi import APIRouter, Body, Depends
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field

from ..errors import NotFound
from ..models import MODEL
from ._deps import get_server

router = APIRouter(prefix="/train", tags=["Train"])


class TrainRequest(BaseModel):
    """What ``extremefast train`` offers (unset: its defaults)."""

    model_config = ConfigDict(extra="forbid")
    rounds: Optional[int] = Field(None, ge=1)
    epochs: Optional[int] = Field(None, ge=1)
    crop_size: Optional[int] = Field(None, ge=16)
    batch_size: Optional[int] = Field(None, ge=1)
    variant: Optional[Literal["a", "b", "c", "d", "e", "f", "full"]] = None
    seed: Optional[int] = None
    train_cases: Optional[int] = Field(None, ge=2)
    device: Optional[Literal["auto", "cpu", "cuda"]] = None
    point_loss_weight: Optional[float] = None
    pad_fraction: Optional[float] = Field(None, ge=0.0, le=2.0)
    refresh_with_walker: Optional[bool] = None
    resume: bool = False
    client_id: Any = None


@router.get("/")
def status(all: bool = False, check_if_running: bool = False, server=Depends(get_server)):
    return server.runs.status(all=all, check_if_running=check_if_running)


@router.get("/log", response_class=PlainTextResponse)
def log(lines: int = 200, server=Depends(get_server)):
    return server.runs.log(lines)


@router.post("/")
def start(params: Optional[TrainRequest] = Body(None), server=Depends(get_server)):
    return server.runs.start((params or TrainRequest()).model_dump())


@router.post("/{model}")
def start_model(model: str, params: Optional[TrainRequest] = Body(None), server=Depends(get_server)):
    if model != MODEL:
        raise NotFound(f"unknown trainer {model!r}; use {MODEL}")
    return server.runs.start((params or TrainRequest()).model_dump())


@router.delete("/")
def stop(server=Depends(get_server)):
    return server.runs.stop()
