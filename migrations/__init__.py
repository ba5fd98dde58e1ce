"""Alembic environment and versions of the registry schema, shipped inside the package.

There is no alembic.ini: `registry.db.schema.alembic_config` builds the configuration in code, so
`compeft-hub db upgrade` works from an installed wheel. To write a new version, change
`registry/db/models.py`, then autogenerate against a database at head, e.g.
`alembic.command.revision(alembic_config(connection), message, autogenerate=True)`, and review it.
"""

from pathlib import Path

SCRIPT_LOCATION = Path(__file__).parent
