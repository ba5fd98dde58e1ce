"""The HTTP layer: the FastAPI app, its dependencies and limits, the JSON API and the web pages.

Requests come in here and go down to `registry.services` (and, for plain reads, straight to
`registry.db`); nothing below imports this package.

- `app.py` builds the app from the settings; `deps.py` injects session, store, settings, search
  and caller; `http_errors.py` maps every failure family to one HTTP status.
- `body_limit.py` caps request bodies, `rate_limits.py` counts writes per token and requests per
  client address, `upload_parts.py` streams a multipart upload to files, `downloads.py` answers
  blobs with ETag and Range.
- `routes/`: the JSON API under /api/v1; `web/`: the server-rendered pages.
"""
