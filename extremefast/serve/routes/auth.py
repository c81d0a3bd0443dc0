"""``/auth/``: MONAI Label's login calls, through which 3D Slicer asks for the bearer token.

``GET /auth/`` says whether a token is needed; ``POST /auth/token`` (a form with ``username`` and
``password``, as Slicer's login box sends it) gives the token back when the password is the token;
``GET /auth/token/valid`` answers 200 with a valid token (the door in :mod:`..guard` checks it).
"""
from fastapi import APIRouter, Depends, Form

from ..errors import Unauthorized
from ..guard import token_matches
from ._deps import get_server

router = APIRouter(prefix="/auth", tags=["Auth"])


@router.get("/")
def auth_enabled(server=Depends(get_server)):
    return {"enabled": server.token is not None, "client_id": None, "realm": None}


@router.post("/token")
def access_token(username: str = Form(""), password: str = Form(""), server=Depends(get_server)):
    if server.token is None:
        return {"access_token": None, "token_type": None}
    if not token_matches(password, server.token):
        raise Unauthorized("wrong token: give the server's --token as the password (any user name)")
    return {"access_token": server.token, "token_type": "bearer"}


@router.get("/token/valid")
def valid_token():
    return {"username": "extremefast"}
