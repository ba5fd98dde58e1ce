"""The account endpoints on the wire: who am I, my tokens, a new token.

`TokenInfo` is built from an `ApiToken` row with `model_validate(row)`: the row's own field names
go on the wire, and the salt and secret hash have no field to leak through.
"""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field

from registry.wire.limits import MAX_TOKEN_DAYS, TOKEN_NAME_PATTERN


def format_utc(moment: datetime) -> str:
    """A token's times as messages and the CLI show them, to the minute."""
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


class TokenInfo(BaseModel):
    """A token as its owner sees it: everything but the secret."""

    model_config = ConfigDict(from_attributes=True)

    lookup_id: str = Field(description="The public part of the token, `chub_<lookup_id>_...`.")
    name: str | None = Field(description="The label given at creation, if any.")
    read_only: bool
    created_at: datetime
    expires_at: datetime | None = Field(description="Refused from then on; null: never expires.")
    revoked_at: datetime | None = Field(description="Refused since then; null: not revoked.")


class Whoami(BaseModel):
    """The user a token belongs to, and the token itself."""

    user: str
    token: TokenInfo


class TokenList(BaseModel):
    """The caller's tokens, revoked and expired ones included, oldest first."""

    tokens: list[TokenInfo]


class TokenRequest(BaseModel):
    """A new token of the caller's user. Unset fields inherit the caller's token: a token may
    create one with fewer rights, never more."""

    model_config = ConfigDict(extra="forbid")

    read_only: bool | None = Field(
        default=None, description="Read-only (a read-only caller may only create these)."
    )
    expires_in_days: int | None = Field(
        default=None,
        ge=1,
        le=MAX_TOKEN_DAYS,
        description="Valid for this many days; unset: as long as the caller's token.",
    )
    name: str | None = Field(
        default=None,
        pattern=f"^{TOKEN_NAME_PATTERN}$",
        description="A label to tell tokens apart, e.g. `laptop` or `ci`.",
    )


class TokenCreated(TokenInfo):
    """A new token: `token` is shown only in this answer and cannot be retrieved again."""

    token: str = Field(description="Send as `Authorization: Bearer <token>`.")
