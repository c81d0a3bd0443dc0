"""``POST /activelearning/{strategy}``: the next scan without an accepted mask (``first`` or ``random``)."""
from typing import Optional

from fastapi import APIRouter, Body, Depends

from ._deps import get_server

router = APIRouter(prefix="/activelearning", tags=["ActiveLearning"])


@router.post("/{strategy}")
def next_sample(strategy: str, params: Optional[dict] = Body(None), server=Depends(get_server)):
    ds = server.datastore
    image_id = ds.next_case(strategy)
    if image_id is None:
        return {}
    path = ds.case(image_id).image_path  # Slicer opens it where it exists on its machine, else downloads "name"
    return {**ds.record(image_id), "path": str(path) if path.is_file() else None, "ts": int(path.stat().st_mtime),
            "strategy": strategy}
