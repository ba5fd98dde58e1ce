"""The compeft-hub registry: HTTP API, metadata in SQL, blobs in a BlobStore.

The folders are the layers; data flows one way, from the top of this list down (a test checks
it, tests/test_layers.py):
- `cli/`: the `compeft-hub` command; `client/`: the SDK (no server dependencies).
- `api/`: HTTP: the FastAPI app, routes (`/api/v1`), web pages, body and rate limits.
- `services/`: uploads (ingest, publish), catalog, search, accounts, fsck.
- `db/`: SQL models, engines, schema migrations, the search index's change log.
- `wire/`: the JSON types client and server exchange, and the limits they check (pydantic only).
- Shared by all: `settings.py` (COMPEFT_HUB_* settings), `errors.py` (failure families),
  `ids.py` (owner/name rules), `origin.py` (the public URL), `serving.py` (uvicorn settings).
"""
