"""Liveness and readiness for load balancers and `compeft-hub serve` scripts."""

from fastapi import APIRouter
from sqlalchemy import text

from registry.api.deps import SessionDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz(session: SessionDep) -> dict[str, str]:
    """`ok` when the database answers (503 otherwise, like every database outage)."""
    session.execute(text("SELECT 1"))
    return {"status": "ok"}
