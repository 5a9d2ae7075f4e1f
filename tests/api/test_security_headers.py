"""Security headers on every answer, and the API docs served from the package, no CDN.

That the pages actually work under these policies is for a browser to show:
tests/browser/test_dashboard.py loads them in Chromium.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable

import httpx
import pytest

from jobplane.settings import Settings

HTML_ROUTES = ("/", "/docs", "/redoc")
#: The URLs a page loads: script sources, stylesheets, icons.
LOADED = re.compile(r'<(?:script|link)[^>]* (?:src|href)="([^"]+)"')
INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


@pytest.fixture
def api(api_factory: Callable[..., httpx.Client], sqlite_url: str) -> httpx.Client:
    return api_factory(Settings(database_url=sqlite_url, broker_url="memory://"))


def directives(policy: str) -> dict[str, list[str]]:
    parsed = (part.split() for part in policy.split(";") if part.strip())
    return {name: values for name, *values in parsed}


@pytest.mark.parametrize("path", HTML_ROUTES)
def test_every_html_page_says_what_may_run_and_may_not_be_framed(
    api: httpx.Client, path: str
) -> None:
    page = api.get(path)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    policy = directives(page.headers["content-security-policy"])
    # Only the page's own origin, no plugins, no framing, no inline script but by hash
    assert policy["default-src"] == ["'self'"]
    assert policy["object-src"] == ["'none'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert all(v == "'self'" or v.startswith("'sha256-") for v in policy["script-src"])
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "no-referrer"


def test_the_dashboard_allows_no_inline_code_at_all(api: httpx.Client) -> None:
    policy = directives(api.get("/").headers["content-security-policy"])
    assert policy["script-src"] == ["'self'"]
    assert policy["style-src"] == ["'self'"]


@pytest.mark.parametrize(
    "path", ["/static/js/main.js", "/api/admin/stats", "/healthz", "/api/tasks/missing"]
)
def test_files_and_json_answers_are_not_sniffed(api: httpx.Client, path: str) -> None:
    answer = api.get(path)
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_the_docs_load_their_files_from_this_api_only(api: httpx.Client, path: str) -> None:
    # Given a documentation page
    page = api.get(path)
    loaded = LOADED.findall(page.text)
    assert loaded, page.text
    # Then everything it loads is a path on this API, served from the package
    for url in loaded:
        assert url.startswith("/") and not url.startswith("//"), url
        answer = api.get(url)
        assert answer.status_code == 200, url
        assert int(answer.headers["content-length"]) > 0, url
    assert "fonts.googleapis.com" not in page.text and "cdn" not in page.text


def test_swagger_ui_s_inline_start_up_is_allowed_by_its_hash_alone(api: httpx.Client) -> None:
    page = api.get("/docs")
    (start_up,) = INLINE_SCRIPT.findall(page.text)
    assert "SwaggerUIBundle(" in start_up
    digest = base64.b64encode(hashlib.sha256(start_up.encode()).digest()).decode()
    policy = directives(page.headers["content-security-policy"])
    assert policy["script-src"] == ["'self'", f"'sha256-{digest}'"]
    # And it asks no outside validator about the document
    assert '"validatorUrl": null' in start_up
