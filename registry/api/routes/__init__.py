"""HTTP routes: each parses the request, calls one service function and shapes the answer."""

from fastapi import APIRouter, Depends

from registry.api.deps import count_request_of_address
from registry.api.routes import account, experts, health, revisions, search
from registry.wire.common import ErrorBody

# Invalid requests are answered `{"detail": "<message>"}` like every error (registry.api.http_errors),
# not with FastAPI's default list of validation errors: say so in the spec.
api_router = APIRouter(responses={422: {"model": ErrorBody}})
api_router.include_router(health.router)  # load balancers poll it: never rate-limited
_api_v1 = APIRouter(prefix="/api/v1", dependencies=[Depends(count_request_of_address)])
for _module in (experts, revisions, search, account):
    _api_v1.include_router(_module.router)
api_router.include_router(_api_v1)
