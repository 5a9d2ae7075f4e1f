"""The dashboard: static files from the package, served at ``/`` without a token.

The page asks for the token and sends it with every data request; the files
themselves hold nothing secret. There is no build step: plain HTML, CSS and native
ES modules (``static/js``, loaded from ``main.js``).
"""

from __future__ import annotations

import mimetypes
import os
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response
from starlette.types import Scope

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"

#: The page and its files may change with every upgrade: revalidate each time.
NO_CACHE = {"Cache-Control": "no-cache"}


class DashboardFiles(StaticFiles):
    """The page's files, revalidated on every load (an ETag makes that a 304).

    Modules that import each other must all come from the same release: one kept from
    the browser's cache beside a newer one fails to load the page.
    """

    def file_response(
        self,
        full_path: str | os.PathLike[str],
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers.update(NO_CACHE)
        return response


def install(app: FastAPI) -> None:
    """Serve ``/`` (the page) and ``/static/…`` (its files) on ``app``."""
    # Browsers run a module only when it is served as JavaScript; Python takes the type
    # from the system's table when there is one, which some systems map to text/plain.
    mimetypes.add_type("text/javascript", ".js")

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers=NO_CACHE)

    app.mount("/static", DashboardFiles(directory=STATIC_DIR), name="static")
