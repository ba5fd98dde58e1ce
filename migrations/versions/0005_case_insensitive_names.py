"""Case-insensitive names: `Alice` is the user `alice`, and `alice/Trivia` the live `alice/trivia`.

Unique indexes on `lower(name)` (ids are ASCII, so SQLite's and PostgreSQL's lower() agree). A
database that already holds names differing only by case cannot get them: the upgrade stops and
lists those names, because which one to rename is the operator's decision.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-15

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from registry.errors import SchemaOutOfDateError

# revision identifiers, used by Alembic.
revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LIVE = sa.text("deleted_at IS NULL")

_USER_COLLISIONS = sa.text(
    "SELECT name FROM users WHERE lower(name) IN "
    "(SELECT lower(name) FROM users GROUP BY lower(name) HAVING count(*) > 1) "
    "ORDER BY lower(name), name"
)
_EXPERT_COLLISIONS = sa.text(
    "SELECT users.name, experts.name FROM experts JOIN users ON users.id = experts.owner_id "
    "WHERE experts.deleted_at IS NULL AND EXISTS (SELECT 1 FROM experts AS other "
    "WHERE other.owner_id = experts.owner_id AND lower(other.name) = lower(experts.name) "
    "AND other.deleted_at IS NULL AND other.id <> experts.id) "
    "ORDER BY users.name, lower(experts.name), experts.name"
)


def _refuse_collisions() -> None:
    """SchemaOutOfDateError listing every name that differs from another only by case."""
    connection = op.get_bind()
    users = [name for (name,) in connection.execute(_USER_COLLISIONS)]
    experts = [f"{owner}/{name}" for owner, name in connection.execute(_EXPERT_COLLISIONS)]
    if not users and not experts:
        return
    found = []
    if users:
        found.append(f"users {', '.join(users)}")
    if experts:
        found.append(f"live experts {', '.join(experts)}")
    raise SchemaOutOfDateError(
        "names are becoming case-insensitive, and these differ only by case: "
        f"{'; '.join(found)}. Keep one of each group: rename (UPDATE ... SET name) or delete "
        "the others, telling their owners, then run `compeft-hub db upgrade` again"
    )


def upgrade() -> None:
    """Refuse collisions, then add the two unique expression indexes."""

    _refuse_collisions()
    op.create_index("uq_users_lower_name", "users", [sa.text("lower(name)")], unique=True)
    op.create_index(
        "uq_experts_live_owner_lower_name",
        "experts",
        ["owner_id", sa.text("lower(name)")],
        unique=True,
        sqlite_where=LIVE,
        postgresql_where=LIVE,
    )


def downgrade() -> None:
    """Drop the indexes; names stay as they are."""

    op.drop_index("uq_experts_live_owner_lower_name", table_name="experts")
    op.drop_index("uq_users_lower_name", table_name="users")
