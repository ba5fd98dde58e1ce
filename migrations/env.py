"""Alembic environment: runs on the connection that `registry.db.schema` hands over.

`render_as_batch` lets the same migration ALTER tables on SQLite (copy-and-move) and PostgreSQL.
"""

from alembic import context

from registry.db.models import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "migrations need a connection from registry.db.schema.alembic_config(); "
        "run `compeft-hub db upgrade` instead of the alembic command line"
    )

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=True,
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
