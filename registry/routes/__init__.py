"""HTTP routes: each parses the request, calls one service function and shapes the answer."""

from fastapi import APIRouter

from registry.routes import experts, health, revisions, search

api_router = APIRouter()
api_router.include_router(health.router)
api_router.include_router(experts.router, prefix="/api/v1")
api_router.include_router(revisions.router, prefix="/api/v1")
api_router.include_router(search.router, prefix="/api/v1")
