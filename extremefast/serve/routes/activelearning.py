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
    record = ds.record(image_id)
    case = ds.case(image_id)
    return {**record, "path": str(case.image_path), "ts": int(case.image_path.stat().st_mtime), "strategy": strategy}
