"""Migrated databases on a PostgreSQL server, for the tests (tests/fixtures/database.py) and
bench/load.py: each under a unique name, so concurrent runs never share one."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import URL, create_engine, text

from registry.db.engine import create_db_engine
from registry.db.schema import upgrade_schema


def migrate(url: str) -> None:
    """Bring the database at `url` to head with the shipped migrations."""
    engine = create_db_engine(url)
    try:
        upgrade_schema(engine)
    finally:
        engine.dispose()


@contextmanager
def fresh_postgres_database(server: URL, prefix: str = "compeft_test") -> Iterator[str]:
    """A new database under a unique name on `server`, migrated; dropped at the end."""
    name = f"{prefix}_{uuid.uuid4().hex[:16]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        url = server.set(database=name).render_as_string(hide_password=False)
        migrate(url)
        yield url
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
