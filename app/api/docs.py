"""The API's documentation pages, ``/docs`` (Swagger UI) and ``/redoc`` (ReDoc), served
from installed files: no CDN, so no third-party script sees a token typed into
"Authorize".

The pages are FastAPI's own (``get_swagger_ui_html``, ``get_redoc_html``), pointed at the
copies of Swagger UI and ReDoc that the ``fastapi-offline`` package ships, served here at
``/docs/assets``. Swagger UI's inline start-up script is allowed by its hash in the page's
Content-Security-Policy, so no other inline script runs. ReDoc writes its styles into
the page as it renders (styled-components), so ``/redoc`` allows inline styles, though
not inline scripts; it has no form where a token is typed.
"""

from __future__ import annotations

import base64
import hashlib
import re

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from jobplane.api.security_headers import BASE, policy

#: Where Swagger UI's and ReDoc's files are served.
ASSETS = "/docs/assets"
#: The installed package (and its folder) those files come from.
ASSETS_PACKAGE = ("fastapi_offline", "static")
INLINE = re.compile(r"<(script|style)>(.*?)</\1>", re.DOTALL)
#: Swagger UI's options beyond FastAPI's: no "valid" badge, which asks an outside
#: validator about the document.
SWAGGER_UI_PARAMETERS = {"validatorUrl": None}


def install(app: FastAPI) -> None:
    """Serve ``/docs``, ``/redoc`` and their files on ``app`` (made with ``docs_url`` and
    ``redoc_url`` None, so FastAPI's CDN pages are not there)."""
    app.mount(ASSETS, StaticFiles(packages=[ASSETS_PACKAGE]), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        page = get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS}/favicon.png",
            oauth2_redirect_url=None,
            swagger_ui_parameters=SWAGGER_UI_PARAMETERS,
        )
        return with_policy(page)

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        page = get_redoc_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{ASSETS}/favicon.png",
            with_google_fonts=False,
        )
        return with_policy(page, style_src="'self' 'unsafe-inline'")


def with_policy(page: HTMLResponse, *, style_src: str | None = None) -> HTMLResponse:
    """``page`` with a Content-Security-Policy that allows its own inline code by hash
    (and styles from ``style_src`` when given: a hash beside it would void
    ``'unsafe-inline'``)."""
    allowed: dict[str, list[str]] = {"script": [], "style": []}
    for kind, code in INLINE.findall(bytes(page.body).decode()):
        digest = base64.b64encode(hashlib.sha256(code.encode()).digest()).decode()
        allowed[kind].append(f"'sha256-{digest}'")
    page.headers["Content-Security-Policy"] = policy(
        **BASE,
        script_src=" ".join(["'self'", *allowed["script"]]),
        style_src=style_src or " ".join(["'self'", *allowed["style"]]),
        img_src="'self' data:",
        connect_src="'self'",
        worker_src="'self' blob:",
    )
    return page
