"""Who am I, and the caller's own tokens: list, create, revoke."""

from typing import Any

from fastapi import APIRouter, status

from registry.api.deps import CallerDep, SessionDep, WriterDep
from registry.services import accounts
from registry.wire.accounts import TokenCreated, TokenInfo, TokenList, TokenRequest, Whoami
from registry.wire.common import ErrorBody

router = APIRouter(tags=["account"])


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The error answers of a route (503: the database is down), all `{"detail": ...}`."""
    return {code: {"model": ErrorBody} for code in (*codes, 503)}


@router.get("/whoami", responses=_errors(401))
def whoami(caller: CallerDep) -> Whoami:
    """The user the token belongs to, and the token (read-only? expires when?)."""
    return Whoami(user=caller.user.name, token=TokenInfo.model_validate(caller.token))


@router.get("/tokens", responses=_errors(401))
def list_tokens(session: SessionDep, caller: CallerDep) -> TokenList:
    """The caller's tokens, without their secrets; revoked and expired ones included."""
    rows = accounts.list_tokens(session, user_name=caller.user.name)
    return TokenList(tokens=[TokenInfo.model_validate(row) for row in rows])


@router.post("/tokens", status_code=status.HTTP_201_CREATED, responses=_errors(400, 401, 403, 429))
def create_token(session: SessionDep, caller: WriterDep, body: TokenRequest) -> TokenCreated:
    """A new token of the caller's user, with the caller's rights or fewer; shown only once."""
    issued = accounts.create_token_as(
        session,
        caller,
        read_only=body.read_only,
        expires_at=accounts.expiry_after(body.expires_in_days),
        name=body.name,
    )
    return TokenCreated(token=issued.token, **TokenInfo.model_validate(issued.row).model_dump())


@router.delete(
    "/tokens/{lookup_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=_errors(401, 403, 404, 429),
)
def revoke_token(session: SessionDep, caller: WriterDep, lookup_id: str) -> None:
    """Revoke one of the caller's tokens for good (again: no change, 204). A read-only token may
    revoke only itself; another user's token answers 404."""
    accounts.revoke_token(session, lookup_id, by=caller)
