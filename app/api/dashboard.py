"""The dashboard: static files from the package, served at ``/`` without a token.

The page asks for the token and sends it with every data request; the files
themselves hold nothing secret. There is no build step: plain HTML, CSS and JS.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"

#: The page and its files may change with every upgrade: revalidate each time.
NO_CACHE = {"Cache-Control": "no-cache"}


def install(app: FastAPI) -> None:
    """Serve ``/`` (the page) and ``/static/…`` (its files) on ``app``."""

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers=NO_CACHE)

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
