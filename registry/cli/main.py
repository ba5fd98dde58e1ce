"""The `compeft-hub` command: serve, manage the schema, users and tokens, check storage, re-embed.

Every command reads the same COMPEFT_HUB_* settings as the server. Errors print one line on stderr
and exit with status 1 (2 for invalid settings); no traceback for things a person can fix. The
operator commands say on stderr which database (and blob store) they act on, and only `serve` and
`db upgrade` create a database: run from the wrong folder, the others stop instead of acting on a
new, empty hub.
Each command imports what it uses when it runs (the server's stack for these, the client's for
those of `client.py` and `compose.py`), so `--help` and the client commands start without SQL,
FAISS or torch, and a client-only install (no `server` extra) runs them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from registry.cli.client import register as register_client_commands
from registry.cli.extras import needs_extra
from registry.wire.accounts import format_utc
from registry.wire.limits import MAX_TOKEN_DAYS

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from registry.db.models import ApiToken
    from registry.settings import Settings

app = typer.Typer(
    help="compeft-hub: a registry of ComPEFT-compressed PEFT adapters. "
    "Configure with COMPEFT_HUB_* environment variables (see registry/settings.py).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Manage the database schema.", no_args_is_help=True)
user_app = typer.Typer(help="Manage users (each user owns the experts under its name).")
token_app = typer.Typer(
    help="Manage API tokens (sent as `Authorization: Bearer <token>`): create, list, revoke. "
    "These act on the configured database as an operator; a user can do the same over HTTP "
    "under /api/v1/tokens."
)
app.add_typer(db_app, name="db")
app.add_typer(user_app, name="user", no_args_is_help=True)
app.add_typer(token_app, name="token", no_args_is_help=True)
register_client_commands(app)


@contextmanager
def _reported_errors() -> Iterator[None]:
    """Turn the errors a person can fix into one line on stderr and a non-zero exit."""
    from pydantic import ValidationError

    from registry.errors import RegistryError
    from storage.base import StorageError

    try:
        yield
    except ValidationError as exc:
        typer.echo(f"error: invalid COMPEFT_HUB_* settings:\n{exc}", err=True)
        raise typer.Exit(2) from exc
    except (RegistryError, StorageError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc


def _announced_database(settings: Settings, *, create: bool = False) -> str:
    """The configured database URL, said on stderr (password hidden). Unless `create`, a SQLite
    file that does not exist raises ValueError: the command runs where no hub lives."""
    from sqlalchemy.engine import make_url

    url = make_url(settings.sqlalchemy_url)
    path = url.database if url.get_backend_name() == "sqlite" else None
    if not create and path and path != ":memory:" and not Path(path).exists():
        raise ValueError(
            f"no hub database at {Path(path).resolve()}: run this where the hub's data lives "
            "(its COMPEFT_HUB_DATA_DIR, by default ./hub-data), or point "
            "COMPEFT_HUB_DATABASE_URL at it; `compeft-hub serve` or `compeft-hub db upgrade` "
            "creates a new hub"
        )
    typer.echo(f"database: {url.render_as_string(hide_password=True)}", err=True)
    return settings.sqlalchemy_url


@contextmanager
def _session(settings: Settings) -> Iterator[Session]:
    """A session on the configured, existing database, after the same schema check as the
    server."""
    from registry.db.engine import create_db_engine, create_session_factory
    from registry.db.schema import prepare_schema

    engine = create_db_engine(_announced_database(settings))
    try:
        prepare_schema(engine, auto_upgrade=bool(settings.auto_upgrade))
        with create_session_factory(engine)() as session:
            yield session
    finally:
        engine.dispose()


@app.command()
@needs_extra("server")
def serve(
    host: Annotated[
        str | None,
        typer.Option(
            help="Bind address (default: env COMPEFT_HUB_HOST, else 127.0.0.1).", show_default=False
        ),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(help="Port (default: env COMPEFT_HUB_PORT, else 8000).", show_default=False),
    ] = None,
) -> None:
    """Run the HTTP API. Without settings: SQLite + blob folder under ./hub-data, upgraded on start.

    Against any other database the server refuses to start until `compeft-hub db upgrade` ran.
    """
    import uvicorn

    from registry.api.app import create_app
    from registry.serving import uvicorn_config
    from registry.settings import Settings

    with _reported_errors():
        settings = Settings()
        api = create_app(settings)
    config = uvicorn_config(
        api,
        host=host or settings.host,
        port=settings.port if port is None else port,
        deadlines=settings.connection_deadlines,
    )
    uvicorn.Server(config).run()


@db_app.command("upgrade")
@needs_extra("server")
def db_upgrade() -> None:
    """Apply every pending migration to the configured database (safe to run twice)."""
    from registry.db.engine import create_db_engine
    from registry.db.schema import current_revisions, upgrade_schema
    from registry.settings import Settings

    with _reported_errors():
        engine = create_db_engine(_announced_database(Settings(), create=True))
        try:
            upgrade_schema(engine)
            typer.echo(f"database schema at {', '.join(sorted(current_revisions(engine)))}")
        finally:
            engine.dispose()


@user_app.command("create")
@needs_extra("server")
def user_create(
    name: Annotated[str, typer.Argument(help="User name (the owner namespace).")],
) -> None:
    """Create a user and print its first read-write token (shown only this once)."""
    from registry.services.accounts import create_token, create_user
    from registry.settings import Settings

    with _reported_errors(), _session(Settings()) as session:
        create_user(session, name=name)
        typer.echo(create_token(session, user_name=name))


@token_app.command("create")
@needs_extra("server")
def token_create(
    name: Annotated[str | None, typer.Argument(help="User name.")] = None,
    user: Annotated[str | None, typer.Option("--user", "-u", help="User name.")] = None,
    read_only: Annotated[
        bool, typer.Option("--read-only", help="The token can read but not upload or delete.")
    ] = False,
    expires_in_days: Annotated[
        int | None,
        typer.Option(
            "--expires-in-days",
            min=1,
            max=MAX_TOKEN_DAYS,
            help="Refuse the token after this many days [default: never expires].",
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
) -> None:
    """Create a token for an existing user and print it (shown only this once)."""
    user_name = name or user
    if user_name is None:
        raise typer.BadParameter("give the user name: `token create NAME` or `--user NAME`")
    from registry.services.accounts import create_token, expiry_after
    from registry.settings import Settings

    with _reported_errors(), _session(Settings()) as session:
        token = create_token(
            session,
            user_name=user_name,
            read_only=read_only,
            expires_at=expiry_after(expires_in_days),
            name=label,
        )
        typer.echo(token)


def _token_state(row: ApiToken, now: datetime) -> str:
    """`revoked ...`, `expired ...`, `expires ...` or `no expiry`: what a refusal would say."""
    if row.revoked_at is not None:
        return f"revoked {format_utc(row.revoked_at)}"
    if row.expires_at is None:
        return "no expiry"
    return f"{'expired' if row.expires_at <= now else 'expires'} {format_utc(row.expires_at)}"


@token_app.command("list")
@needs_extra("server")
def token_list(name: Annotated[str, typer.Argument(help="User name.", show_default=False)]) -> None:
    """List a user's tokens, one a line (never their secrets): lookup id, read-write or
    read-only, created, revoked / expired / expires, name."""
    from registry.db.models import utc_now
    from registry.services.accounts import list_tokens
    from registry.settings import Settings

    with _reported_errors(), _session(Settings()) as session:
        rows = list_tokens(session, user_name=name)
        now = utc_now()
        for row in rows:
            access = "read-only" if row.read_only else "read-write"
            typer.echo(
                f"{row.lookup_id}  {access:<10}  created {format_utc(row.created_at)}  "
                f"{_token_state(row, now):<28}  {row.name or ''}".rstrip()
            )


@token_app.command("revoke")
@needs_extra("server")
def token_revoke(
    lookup_id: Annotated[
        str,
        typer.Argument(
            help="The token's lookup id: the hex part after `chub_`, as `token list` shows it.",
            show_default=False,
        ),
    ],
) -> None:
    """Revoke a token for good: every request with it is refused (401) from now on.

    Revoking a revoked token again changes nothing.
    """
    from registry.db.models import utc_now
    from registry.services.accounts import revoke_token
    from registry.settings import Settings

    with _reported_errors(), _session(Settings()) as session:
        row = revoke_token(session, lookup_id)
        typer.echo(f"token {row.lookup_id} of {row.user.name}: {_token_state(row, utc_now())}")


@app.command()
@needs_extra("server")
def fsck(
    repair: Annotated[
        bool,
        typer.Option(
            "--repair",
            help="Delete orphan, corrupt and partially written blobs and flag revisions whose "
            "blob is missing. Safe while uploads run, except that a put interrupted by it must "
            "be retried.",
        ),
    ] = False,
    verify: Annotated[
        bool,
        typer.Option(
            "--verify", help="Also read every blob and check its sha256 (reads the whole store)."
        ),
    ] = False,
) -> None:
    """Find revisions whose blob is missing and blobs no revision references.

    Exits with status 1 when problems were found and not repaired.
    """
    from registry.services.fsck import fsck as run_fsck
    from registry.settings import Settings
    from storage.factory import open_blob_store

    with _reported_errors():
        settings = Settings()
        with _session(settings) as session:
            typer.echo(f"blob store: {settings.storage_url}", err=True)
            report = run_fsck(
                session, open_blob_store(settings.storage_url), repair=repair, verify=verify
            )
    typer.echo(f"revisions whose blob is missing: {len(report.dangling)}")
    for row in report.dangling:
        typer.echo(f"  {row.expert} revision {row.revision}: blob {row.blob_sha256}")
    for what, names in (
        ("blobs no revision references", report.orphan_blobs),
        ("blobs of uploads still in flight (kept)", report.in_flight_blobs),
        ("blobs whose bytes do not hash to their key", report.corrupt_blobs),
        ("partial writes of interrupted uploads", report.abandoned_writes),
    ):
        typer.echo(f"{what}: {len(names)}")
        for name in names:
            typer.echo(f"  {name}")
    if repair:
        typer.echo(
            f"repaired: deleted {report.deleted_orphans} orphan blob(s), flagged "
            f"{report.marked_missing} revision(s) as missing, unflagged {report.marked_present}; "
            f"deleted {report.deleted_corrupt} corrupt blob(s) and {report.deleted_abandoned} "
            "partial write(s)"
        )
    elif not report.clean:
        typer.echo("run `compeft-hub fsck --repair` to fix what can be fixed")
        raise typer.Exit(1)


@app.command()
@needs_extra("server")
def reembed() -> None:
    """Embed every live expert's latest revision with the installed embedding model.

    Run it after the model changes (or after upgrading from a schema without embeddings): until
    then, experts embedded by another model are left out of search. It also gives lexical (n-gram)
    and description vectors to experts stored before they existed, which until then rank without
    those parts. Commits batch by batch, so it can be interrupted and run again; running servers
    pick up each batch as it lands.
    """
    from tqdm import tqdm

    from registry.services.vectors import reembed as reembed_experts
    from registry.settings import Settings
    from retrieval.embedder import TaskEmbedder

    embedder = TaskEmbedder()
    with (
        _reported_errors(),
        _session(Settings()) as session,
        tqdm(desc="re-embedding", unit="expert", disable=None) as progress,
    ):
        report = reembed_experts(session, embedder, on_batch=progress.update)
    typer.echo(
        f"re-embedded {report.embedded} expert(s) with {embedder.name} {embedder.version}; "
        f"{report.current} already current"
    )
