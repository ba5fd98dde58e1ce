"""The registry's services: what the hub does, independent of HTTP.

Called by `registry.api` and the CLI; they use `registry.db`, the wire types and the lower
packages (compeft_core, storage, retrieval), never the HTTP layer.

- Upload path: `ingest.py` (validate and compress with compeft_core) -> `vectors.py` (the task
  vector) -> `publish.py` (claim the blob with `blob_claims.py`, put it, then commit the row, its
  vector and an index change); `uploads.py` strings them together.
- Reads: `catalog.py` (list, show, soft delete), `search.py` (each process's index of task
  vectors, kept current by `registry.db.index_log`), `answers.py` (wire types from rows).
- `accounts.py` (users, hashed tokens, expiry, revocation), `fsck.py` (SQL against the blob store),
  `vectors.reembed` (after an embedding-model change).
"""
