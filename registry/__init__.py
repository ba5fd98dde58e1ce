"""The compeft-hub registry: HTTP API, metadata in SQL, blobs in a BlobStore.

Where things live:
- `app.py` builds the FastAPI app from `settings.py`; `routes/` are thin and call the services;
  `deps.py` injects the session, store, settings, search and caller; `http_errors.py` maps every
  failure family (`errors.py`, compeft_core, storage, retrieval, SQLAlchemy) to one HTTP status;
  `body_limit.py` caps every request body, `rate_limits.py` counts writes per token and
  requests per client address.
- Upload path: `upload_parts.py` (stream the multipart body to files, with limits) -> `ingest.py`
  (validate and compress with compeft_core) -> `embeddings.py` (the task vector) -> `publish.py`
  (claim the blob with `blob_claims.py`, put it, then commit the row, its vector and an index
  change); `uploads.py` strings them together.
- Reads: `catalog.py` (list, show, soft delete), `downloads.py` (ETag, Range), `search.py` (each
  process's index of task vectors, kept current by the counter and change log of `index_log.py`).
- Wire types: `wire/` (pydantic only: what the client and the server exchange, and the limits
  they check); `answers.py` builds them from SQL rows, on the server side only.
- Data: `models.py` (SQLAlchemy), `schema.py` (Alembic migrations in `migrations/`),
  `database.py` (engines), `accounts.py` (users, hashed tokens, expiry, revocation; their API in
  `routes/account.py` with the wire types of `wire/accounts.py`), `ids.py` (owner/name rules).
- Client: `client/` (the SDK, importable without the server's dependencies) and `client_cli.py`.
- Operations: `cli.py` (`compeft-hub`), `fsck.py` (SQL vs blob store), `embeddings.reembed`.
"""
