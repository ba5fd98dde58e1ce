"""How the operator commands reach the hub's own database, and how they report errors.

Shared by `main.py` and the operator half of `tokens.py`. Nothing is imported from the server's
stack until a function runs, so importing this module costs a client-only install nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from registry.settings import Settings


@contextmanager
def operator_errors() -> Iterator[None]:
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


def announced_database(settings: Settings, *, create: bool = False) -> str:
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
def database_session(settings: Settings) -> Iterator[Session]:
    """A session on the configured, existing database, after the same schema check as the
    server."""
    from registry.db.engine import create_db_engine, create_session_factory
    from registry.db.schema import prepare_schema

    engine = create_db_engine(announced_database(settings))
    try:
        prepare_schema(engine, auto_upgrade=bool(settings.auto_upgrade))
        with create_session_factory(engine)() as session:
            yield session
    finally:
        engine.dispose()
