"""Apply and check the Alembic migrations shipped in the `migrations` package.

The server calls `prepare_schema` before it accepts requests: it upgrades the embedded default and
refuses, with the command to run, any other database whose schema is not at head.
"""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine

from migrations import SCRIPT_LOCATION
from registry.errors import SchemaOutOfDateError

UPGRADE_HINT = "run `compeft-hub db upgrade` (with the same COMPEFT_HUB_* settings) first"


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic configuration built in code (no alembic.ini), bound to `connection`."""
    config = Config()
    config.set_main_option("script_location", str(SCRIPT_LOCATION))
    config.attributes["connection"] = connection
    return config


def upgrade_schema(engine: Engine, revision: str = "head") -> None:
    """Migrate up to `revision` in one transaction (PostgreSQL DDL is transactional)."""
    with engine.begin() as connection:
        command.upgrade(alembic_config(connection), revision)


def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def head_revisions() -> set[str]:
    """The revision(s) this code's models correspond to."""
    return set(_scripts().get_heads())


def current_revisions(engine: Engine) -> set[str]:
    """The revision(s) recorded in the database; empty for a database never upgraded."""
    with engine.connect() as connection:
        return set(MigrationContext.configure(connection).get_current_heads())


def ensure_schema_current(engine: Engine) -> None:
    """Raise SchemaOutOfDateError, saying what to do, unless the database is at head."""
    heads, current = head_revisions(), current_revisions(engine)
    if current == heads:
        return
    database = engine.url.render_as_string(hide_password=True)
    if not current:
        raise SchemaOutOfDateError(
            f"the database {database} has no compeft-hub schema; {UPGRADE_HINT}"
        )
    if not current <= {script.revision for script in _scripts().walk_revisions()}:
        raise SchemaOutOfDateError(
            f"the database {database} is at schema {sorted(current)}, which this compeft-hub does "
            "not know (written by a newer version?); upgrade compeft-hub"
        )
    raise SchemaOutOfDateError(
        f"the database {database} is at schema {sorted(current)} but this compeft-hub needs "
        f"{sorted(heads)}; {UPGRADE_HINT}"
    )


def prepare_schema(engine: Engine, *, auto_upgrade: bool) -> None:
    """Upgrade (embedded default) or check (everything else) the schema before serving."""
    if auto_upgrade:
        upgrade_schema(engine)
    else:
        ensure_schema_current(engine)
