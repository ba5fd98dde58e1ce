"""The web UI: server-rendered pages to browse, search and inspect experts.

- `pages.py`: the routes, mounted at `/` (the API stays under `/api/v1`), thin like the API's.
- `rendering.py`: the Jinja2 environment (autoescaping everything), security headers, and the
  route class that answers failures with HTML error pages.
- `templates/`, `static/`: the HTML, one stylesheet and one small script (copy buttons). Pages
  load nothing from other sites.
"""

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from registry.api.web.pages import router

STATIC_DIR = Path(__file__).parent / "static"


def mount_web_ui(app: FastAPI) -> None:
    """Serve the pages and their stylesheet and script (`/static`) from `app`."""
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
