"""Users and bearer tokens.

A token reads `chub_<lookup id>_<secret>`. Only the lookup id is stored in clear; the secret is
stored as sha256(salt + secret) and compared in constant time. The token string exists only in
the return value of `create_token`: it cannot be shown again.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from registry.errors import (
    AuthenticationError,
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
)
from registry.ids import validate_id_part
from registry.models import ApiToken, User

TOKEN_PREFIX = "chub"
_LOOKUP_ID = re.compile(r"[0-9a-f]{16}")  # secrets.token_hex(8)


@dataclass(frozen=True)
class Caller:
    """Who made a request, and whether the token may write."""

    user: User
    read_only: bool
    token_id: str  # the token's public lookup id: what rate limits count by


def _hash_secret(salt: str, secret: str) -> str:
    return hashlib.sha256(f"{salt}{secret}".encode()).hexdigest()


def create_user(session: Session, *, name: str) -> User:
    """Create and commit a user; the name follows the owner rules of expert ids."""
    user = User(name=validate_id_part(name, what="user name"))
    session.add(user)
    try:
        session.commit()
    except IntegrityError as exc:
        session.rollback()
        raise ConflictError(f"user {name!r} already exists") from exc
    return user


def create_token(session: Session, *, user_name: str, read_only: bool = False) -> str:
    """Create and commit a token for an existing user; return the token string (shown once)."""
    user = session.scalar(select(User).where(User.name == user_name))
    if user is None:
        raise NotFoundError(
            f"no user named {user_name!r}; create it with `compeft-hub user create`"
        )
    lookup_id, secret, salt = secrets.token_hex(8), secrets.token_urlsafe(32), secrets.token_hex(16)
    session.add(
        ApiToken(
            user=user,
            lookup_id=lookup_id,
            salt=salt,
            secret_hash=_hash_secret(salt, secret),
            read_only=read_only,
        )
    )
    session.commit()
    return f"{TOKEN_PREFIX}_{lookup_id}_{secret}"


def authenticate(session: Session, token: str) -> Caller:
    """The caller a token belongs to; AuthenticationError for anything else (same message)."""
    prefix, _, rest = token.partition("_")
    lookup_id, _, secret = rest.partition("_")
    row = None
    if prefix == TOKEN_PREFIX and _LOOKUP_ID.fullmatch(lookup_id) and secret:  # never query NUL
        row = session.scalar(select(ApiToken).where(ApiToken.lookup_id == lookup_id))
    if row is None or not hmac.compare_digest(row.secret_hash, _hash_secret(row.salt, secret)):
        raise AuthenticationError("invalid token; create one with `compeft-hub token create`")
    return Caller(user=row.user, read_only=row.read_only, token_id=row.lookup_id)


def authorize_write(caller: Caller, owner: str) -> None:
    """Writes need a read-write token of the owner itself; PermissionDeniedError otherwise."""
    if caller.read_only:
        raise PermissionDeniedError("this token is read-only; create one without --read-only")
    if caller.user.name != owner:
        raise PermissionDeniedError(
            f"user {caller.user.name!r} cannot write under {owner!r}: only {owner!r} can"
        )
