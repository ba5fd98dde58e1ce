"""`compeft-hub token create|list|revoke`: a user's own tokens over HTTP, or any user's as the
operator, on the database.

One rule picks the way for all three (`RULE`, said in every help text). Both ways print the same
lines (`token_line`, `token_state`) and say on stderr what they act on: `hub: URL` or
`database: URL`. The HTTP way imports only the client, so it runs in a client-only install; the
database way needs the `server` extra, and says so when it is missing.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, NoReturn, TypeVar

import typer

from registry.cli.database import database_session, operator_errors
from registry.cli.extras import needs_extra
from registry.cli.options import Endpoint, Token, open_client, reported_errors
from registry.wire.accounts import TokenInfo, format_utc
from registry.wire.limits import MAX_TOKEN_DAYS

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from registry.client import HubClient

RULE = (
    "With an API token (--token or COMPEFT_HUB_TOKEN) and no user NAME: your own tokens, over "
    "HTTP at the hub (--endpoint / COMPEFT_HUB_ENDPOINT); with a user NAME (or, for revoke, "
    "without a token): the operator's, on the database."
)

token_app = typer.Typer(
    help="Manage API tokens (sent as `Authorization: Bearer <token>`): create, list, revoke. "
    + RULE,
    no_args_is_help=True,
)

Command = TypeVar("Command", bound=Callable[..., None])


def _with_rule(command: Command) -> Command:
    """Append RULE to a command's help (its docstring), so each says it in the same words."""
    command.__doc__ = f"{inspect.cleandoc(command.__doc__ or '')}\n\n{RULE}"
    return command


def token_access(info: TokenInfo) -> str:
    """`read-only` or `read-write`."""
    return "read-only" if info.read_only else "read-write"


def token_state(info: TokenInfo, now: datetime) -> str:
    """`revoked ...`, `expired ...`, `expires ...` or `no expiry`: what a refusal would say."""
    if info.revoked_at is not None:
        return f"revoked {format_utc(info.revoked_at)}"
    if info.expires_at is None:
        return "no expiry"
    return f"{'expired' if info.expires_at <= now else 'expires'} {format_utc(info.expires_at)}"


def token_line(info: TokenInfo, now: datetime) -> str:
    """One token in a listing, the hub's and the database's alike (never its secret)."""
    return (
        f"{info.lookup_id}  {token_access(info):<10}  created {format_utc(info.created_at)}  "
        f"{token_state(info, now):<28}  {info.name or ''}".rstrip()
    )


def _print_tokens(tokens: Iterable[TokenInfo]) -> None:
    now = datetime.now(UTC)
    for info in tokens:
        typer.echo(token_line(info, now))


def _has_token(token: str | None) -> bool:
    """Whether an API token is configured: `--token`, else COMPEFT_HUB_TOKEN as the client
    reads it."""
    from registry.client.settings import ClientSettings

    with reported_errors():
        return bool(token or ClientSettings().token)


def _neither() -> NoReturn:
    """Neither a user name nor a token: say both ways, exit 1."""
    typer.echo(
        "error: give a user NAME (the operator's way, on the hub's database) or an API token "
        "(--token or COMPEFT_HUB_TOKEN: your own tokens, over HTTP at the hub)",
        err=True,
    )
    raise typer.Exit(1)


@contextmanager
def _hub(endpoint: str | None, token: str | None) -> Iterator[HubClient]:
    """The client acting as the token's user, its hub said on stderr; hub errors: one line."""
    with reported_errors(), open_client(endpoint, token) as client:
        typer.echo(f"hub: {client.endpoint}", err=True)
        yield client


@contextmanager
def _database() -> Iterator[Session]:
    """A session on the configured database, for the operator; without the `server` extra, the
    line that says to install it (imports of the server's stack inside the block included)."""
    with needs_extra("server"):
        from registry.settings import Settings

        with operator_errors(), database_session(Settings()) as session:
            yield session


@token_app.command("create")
@_with_rule
def token_create(
    name: Annotated[str | None, typer.Argument(help="User name.", show_default=False)] = None,
    user: Annotated[str | None, typer.Option("--user", "-u", help="User name.")] = None,
    read_only: Annotated[
        bool,
        typer.Option(
            "--read-only",
            help="The token can read but not upload or delete (default: read-write; over HTTP, "
            "as the token in use).",
            show_default=False,
        ),
    ] = False,
    expires_in_days: Annotated[
        int | None,
        typer.Option(
            "--expires-in-days",
            min=1,
            max=MAX_TOKEN_DAYS,
            help="Refuse the token after this many days (default: never; over HTTP, when the "
            "token in use expires).",
            show_default=False,
        ),
    ] = None,
    label: Annotated[
        str | None,
        typer.Option(
            "--name",
            help="A label to tell tokens apart in `token list`, e.g. laptop or ci.",
            show_default=False,
        ),
    ] = None,
    endpoint: Endpoint = None,
    token: Token = None,
) -> None:
    """Create a token and print it (shown only this once).

    Over HTTP it has the rights of the token in use or fewer: unset options are inherited.
    """
    user_name = name or user
    if user_name is None and _has_token(token):
        with _hub(endpoint, token) as client:
            created = client.create_token(
                read_only=read_only or None, expires_in_days=expires_in_days, name=label
            )
        typer.echo(created.token)
        return
    if user_name is None:
        _neither()
    with _database() as session:
        from registry.services.accounts import create_token, expiry_after

        typer.echo(
            create_token(
                session,
                user_name=user_name,
                read_only=read_only,
                expires_at=expiry_after(expires_in_days),
                name=label,
            )
        )


@token_app.command("list")
@_with_rule
def token_list(
    name: Annotated[str | None, typer.Argument(help="User name.", show_default=False)] = None,
    endpoint: Endpoint = None,
    token: Token = None,
) -> None:
    """List tokens, one a line (never their secrets): lookup id, read-write or read-only,
    created, revoked / expired / expires, name."""
    if name is None:
        if not _has_token(token):
            _neither()
        with _hub(endpoint, token) as client:
            tokens = client.list_tokens()
        _print_tokens(tokens)
        return
    with _database() as session:
        from registry.services.accounts import list_tokens

        _print_tokens(TokenInfo.model_validate(row) for row in list_tokens(session, user_name=name))


@token_app.command("revoke")
@_with_rule
def token_revoke(
    lookup_id: Annotated[
        str,
        typer.Argument(
            help="The token's lookup id: the hex part after `chub_`, as `token list` shows it.",
            show_default=False,
        ),
    ],
    endpoint: Endpoint = None,
    token: Token = None,
) -> None:
    """Revoke a token for good: every request with it is refused (401) from now on.

    Revoking a revoked token again changes nothing. Over HTTP, a read-only token may revoke only
    itself.
    """
    if _has_token(token):
        _revoke_over_http(lookup_id, endpoint, token)
        return
    with _database() as session:
        from registry.services.accounts import revoke_token

        row = revoke_token(session, lookup_id)
        state = token_state(TokenInfo.model_validate(row), datetime.now(UTC))
        typer.echo(f"token {row.lookup_id} of {row.user.name}: {state}")


def _revoke_over_http(lookup_id: str, endpoint: str | None, token: str | None) -> None:
    """Revoke, then read the token back for the time the hub recorded; a token that revoked
    itself can read nothing more (401), and the line says so instead."""
    from registry.client import AuthError

    with _hub(endpoint, token) as client:
        client.revoke_token(lookup_id)
        try:
            tokens = client.list_tokens()
        except AuthError:
            typer.echo(f"token {lookup_id}: revoked (the token this command used)")
            return
    revoked = next(info for info in tokens if info.lookup_id == lookup_id)
    typer.echo(f"token {lookup_id}: {token_state(revoked, datetime.now(UTC))}")
