"""Persistence: the SQL models, engines, schema migrations and the search index's change log.

The lowest layer of the registry: it imports only the wire limits (column sizes) and errors.

- `models.py` (SQLAlchemy), `engine.py` (engines and sessions), `schema.py` (Alembic migrations in
  `migrations/`: check, upgrade), `index_log.py` (the counter and change log search follows).
"""
