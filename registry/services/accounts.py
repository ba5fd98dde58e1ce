"""Users and bearer tokens: create, authenticate, list, revoke.

A token reads `chub_<lookup id>_<secret>`. Only the lookup id is stored in clear; the secret is
stored as sha256(salt + secret) and compared in constant time. The token string exists only in
the return value of `issue_token`: it cannot be shown again.

A token may expire (`expires_at`) and be revoked (`revoked_at`); either is told only to a caller
whose secret matched, so a lookup id alone reveals nothing. A token can create another with its
own rights or fewer, never more: read-only begets read-only, and nothing outlives its creator.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from registry.db.models import ApiToken, User, utc_now
from registry.errors import (
    AuthenticationError,
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
)
from registry.ids import validate_id_part
from registry.wire.accounts import format_utc
from registry.wire.limits import TOKEN_NAME_LENGTH, TOKEN_NAME_PATTERN

TOKEN_PREFIX = "chub"
_TOKEN_NAME = re.compile(TOKEN_NAME_PATTERN)
_LOOKUP_ID = re.compile(r"[0-9a-f]{16}")  # secrets.token_hex(8)
_NEW_TOKEN_HINT = "create a new one with `compeft-hub token create`"


@dataclass(frozen=True)
class Caller:
    """Who made a request: the token row that matched, and through it its user."""

    token: ApiToken

    @property
    def user(self) -> User:
        return self.token.user

    @property
    def read_only(self) -> bool:
        return self.token.read_only

    @property
    def token_id(self) -> str:
        """The token's public lookup id: what rate limits count by."""
        return self.token.lookup_id


@dataclass(frozen=True)
class IssuedToken:
    """A new token's row and its string, which exists nowhere else."""

    row: ApiToken
    token: str


def _hash_secret(salt: str, secret: str) -> str:
    return hashlib.sha256(f"{salt}{secret}".encode()).hexdigest()


def create_user(session: Session, *, name: str) -> User:
    """Create and commit a user; the name follows the owner rules of expert ids.

    Names are unique regardless of case (a unique index on lower(name) settles races): `Alice`
    is refused while `alice` exists, since the two would read as one owner.
    """
    validate_id_part(name, what="user name")
    _refuse_taken_user_name(session, name)
    user = User(name=name)
    session.add(user)
    try:
        session.commit()
    except IntegrityError as exc:
        session.rollback()
        _refuse_taken_user_name(session, name)
        raise ConflictError(f"user {name!r} already exists") from exc
    return user


def _refuse_taken_user_name(session: Session, name: str) -> None:
    """ConflictError naming the existing user when `name` is taken, in this case or another."""
    existing = session.scalar(select(User.name).where(func.lower(User.name) == func.lower(name)))
    if existing == name:
        raise ConflictError(f"user {name!r} already exists")
    if existing is not None:
        raise ConflictError(
            f"user {name!r} exists as {existing!r}: user names are case-insensitive"
        )


def expiry_after(days: int | None) -> datetime | None:
    """The expiry of a token valid for `days` from now; None (never expires) for None.

    Callers bound `days` by MAX_TOKEN_DAYS first (typer and pydantic do), so it cannot overflow.
    """
    return None if days is None else utc_now() + timedelta(days=days)


def _user_named(session: Session, name: str) -> User:
    user = session.scalar(select(User).where(User.name == name))
    if user is None:
        raise NotFoundError(f"no user named {name!r}; create it with `compeft-hub user create`")
    return user


def issue_token(
    session: Session,
    user: User,
    *,
    read_only: bool = False,
    expires_at: datetime | None = None,
    name: str | None = None,
) -> IssuedToken:
    """Create and commit a token of `user`. `expires_at` is not checked: tests set past ones."""
    if name is not None and _TOKEN_NAME.fullmatch(name) is None:
        raise InvalidRequestError(
            f"invalid token name {name!r}: use 1-{TOKEN_NAME_LENGTH} letters, digits, spaces "
            "or '_.:@-'"
        )
    lookup_id, secret, salt = secrets.token_hex(8), secrets.token_urlsafe(32), secrets.token_hex(16)
    row = ApiToken(
        user=user,
        lookup_id=lookup_id,
        salt=salt,
        secret_hash=_hash_secret(salt, secret),
        read_only=read_only,
        name=name,
        expires_at=expires_at,
    )
    session.add(row)
    session.commit()
    return IssuedToken(row, f"{TOKEN_PREFIX}_{lookup_id}_{secret}")


def create_token(
    session: Session,
    *,
    user_name: str,
    read_only: bool = False,
    expires_at: datetime | None = None,
    name: str | None = None,
) -> str:
    """Create and commit a token for an existing user; return the token string (shown once)."""
    user = _user_named(session, user_name)
    return issue_token(session, user, read_only=read_only, expires_at=expires_at, name=name).token


def create_token_as(
    session: Session,
    caller: Caller,
    *,
    read_only: bool | None = None,
    expires_at: datetime | None = None,
    name: str | None = None,
) -> IssuedToken:
    """A token of the caller's user, with the caller's rights or fewer (PermissionDeniedError).

    Unset, `read_only` and `expires_at` are the caller's own; so a leaked read-only or expiring
    token cannot mint a read-write or a longer-lived one.
    """
    parent = caller.token
    if read_only is None:
        read_only = parent.read_only
    if parent.read_only and not read_only:
        raise PermissionDeniedError(
            "this token is read-only: it can create only read-only tokens (send read_only: true)"
        )
    if parent.expires_at is not None:
        expires_at = expires_at or parent.expires_at
        if expires_at > parent.expires_at:
            raise PermissionDeniedError(
                f"this token expires on {format_utc(parent.expires_at)}: it cannot create one that "
                "outlives it"
            )
    return issue_token(session, caller.user, read_only=read_only, expires_at=expires_at, name=name)


def _refusal(row: ApiToken, now: datetime) -> str | None:
    """Why a token whose secret matched is refused, with what to do; None while it is valid."""
    if row.revoked_at is not None:
        return f"this token was revoked on {format_utc(row.revoked_at)}; {_NEW_TOKEN_HINT}"
    if row.expires_at is not None and row.expires_at <= now:
        return f"this token expired on {format_utc(row.expires_at)}; {_NEW_TOKEN_HINT}"
    return None


def authenticate(session: Session, token: str) -> Caller:
    """The caller a token belongs to; AuthenticationError for anything else.

    Unknown tokens and wrong secrets get the same message; only the holder of the secret learns
    that its token was revoked or has expired.
    """
    prefix, _, rest = token.partition("_")
    lookup_id, _, secret = rest.partition("_")
    row = None
    if prefix == TOKEN_PREFIX and _LOOKUP_ID.fullmatch(lookup_id) and secret:  # never query NUL
        row = session.scalar(select(ApiToken).where(ApiToken.lookup_id == lookup_id))
    if row is None or not hmac.compare_digest(row.secret_hash, _hash_secret(row.salt, secret)):
        raise AuthenticationError(f"invalid token; {_NEW_TOKEN_HINT}")
    refusal = _refusal(row, utc_now())
    if refusal is not None:
        raise AuthenticationError(refusal)
    return Caller(row)


def list_tokens(session: Session, *, user_name: str) -> Sequence[ApiToken]:
    """Every token of the user, revoked and expired ones included, oldest first."""
    user = _user_named(session, user_name)
    return session.scalars(
        select(ApiToken).where(ApiToken.user_id == user.id).order_by(ApiToken.id)
    ).all()


def revoke_token(session: Session, lookup_id: str, *, by: Caller | None = None) -> ApiToken:
    """Revoke a token for good and return its row; `by=None` is the operator (any token).

    A caller may revoke its user's tokens; a read-only one only itself (it may not lock its user
    out). Another user's token is "not found", as if it did not exist. Revoking again changes
    nothing and succeeds, keeping the first `revoked_at`: the client retries DELETE on a lost
    answer, and the retry must not fail.
    """
    row = None
    if _LOOKUP_ID.fullmatch(lookup_id):
        row = session.scalar(select(ApiToken).where(ApiToken.lookup_id == lookup_id))
    if row is None or (by is not None and row.user_id != by.user.id):
        owner = "" if by is None else f" of user {by.user.name!r}"
        raise NotFoundError(
            f"no token {lookup_id!r}{owner}; `compeft-hub token list` or GET /api/v1/tokens "
            "shows the lookup ids"
        )
    if by is not None and by.read_only and row.id != by.token.id:
        raise PermissionDeniedError(
            "a read-only token can revoke only itself; use a read-write token of the same user"
        )
    if row.revoked_at is None:
        row.revoked_at = utc_now()
        session.commit()
    return row


def authorize_write(caller: Caller, owner: str) -> None:
    """Writes need a read-write token of the owner itself; PermissionDeniedError otherwise."""
    if caller.read_only:
        raise PermissionDeniedError("this token is read-only; create one without --read-only")
    if caller.user.name != owner:
        raise PermissionDeniedError(
            f"user {caller.user.name!r} cannot write under {owner!r}: only {owner!r} can"
        )
