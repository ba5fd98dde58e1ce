"""The `compeft-hub` command: serve, manage the schema and users, check storage, re-embed.

Every command reads the same COMPEFT_HUB_* settings as the server. Errors print one line on stderr
and exit with status 1 (2 for invalid settings); no traceback for things a person can fix. The
operator commands say on stderr which database (and blob store) they act on, and only `serve` and
`db upgrade` create a database: run from the wrong folder, the others stop instead of acting on a
new, empty hub. The token commands are in `tokens.py`, the database access in `database.py`.
Each command imports what it uses when it runs (the server's stack for these, the client's for
those of `client.py` and `compose.py`), so `--help` and the client commands start without SQL,
FAISS or torch, and a client-only install (no `server` extra) runs them.
"""

from __future__ import annotations

from typing import Annotated

import typer

from registry.cli.client import register as register_client_commands
from registry.cli.database import announced_database, database_session, operator_errors
from registry.cli.extras import needs_extra
from registry.cli.tokens import token_app

app = typer.Typer(
    help="compeft-hub: a registry of ComPEFT-compressed PEFT adapters. "
    "Configure with COMPEFT_HUB_* environment variables (see registry/settings.py).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Manage the database schema.", no_args_is_help=True)
user_app = typer.Typer(help="Manage users (each user owns the experts under its name).")
app.add_typer(db_app, name="db")
app.add_typer(user_app, name="user", no_args_is_help=True)
app.add_typer(token_app, name="token", no_args_is_help=True)
register_client_commands(app)


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

    with operator_errors():
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

    with operator_errors():
        engine = create_db_engine(announced_database(Settings(), create=True))
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

    with operator_errors(), database_session(Settings()) as session:
        create_user(session, name=name)
        typer.echo(create_token(session, user_name=name))


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

    with operator_errors():
        settings = Settings()
        with database_session(settings) as session:
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
        operator_errors(),
        database_session(Settings()) as session,
        tqdm(desc="re-embedding", unit="expert", disable=None) as progress,
    ):
        report = reembed_experts(session, embedder, on_batch=progress.update)
    typer.echo(
        f"re-embedded {report.embedded} expert(s) with {embedder.name} {embedder.version}; "
        f"{report.current} already current"
    )
