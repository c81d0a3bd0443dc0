"""``GET /info/``: the app, its two deepgrow models, strategies and trainer."""
from fastapi import APIRouter, Depends

from ._deps import get_server

router = APIRouter(prefix="/info", tags=["App"])


@router.get("/")
def app_info(server=Depends(get_server)):
    return server.info()
