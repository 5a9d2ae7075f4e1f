"""The dashboard's files: what the page loads is served with its type, and shipped.

Browsers run an ES module only when it is served as JavaScript, and a module missing
from the wheel (pyproject.toml's package-data) breaks the whole page, not one feature.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urljoin

import httpx
import pytest

from jobplane.api.dashboard import STATIC_DIR
from jobplane.settings import Settings

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"
#: The package's folder (app/): package-data globs are relative to it.
PACKAGE_DIR = STATIC_DIR.parent
JAVASCRIPT = ("text/javascript", "application/javascript")
#: What index.html loads: its stylesheets and module scripts.
PAGE_FILES = re.compile(r'<(?:link rel="stylesheet" href|script type="module" src)="([^"]+)"')
#: A static import at the start of a line (not an `@import` of types inside a comment).
IMPORT = re.compile(r"""^import\b[^"';]*["']([^"']+)["']""", re.MULTILINE)
#: An element a module looks up by id (dom.js's `$`), and one a module creates with an id.
LOOKUP = re.compile(r'\$\("([^"]+)"')
CREATED_ID = re.compile(r'\bid: "([^"]+)"')


@pytest.fixture
def api(api_factory: Callable[..., httpx.Client], sqlite_url: str) -> httpx.Client:
    return api_factory(Settings(database_url=sqlite_url, broker_url="memory://"))


def page_files(api: httpx.Client) -> dict[str, httpx.Response]:
    """Every file the page loads, by URL path: index.html's, then each module's imports."""
    page = api.get("/")
    assert page.status_code == 200
    todo = [urljoin("/", path) for path in PAGE_FILES.findall(page.text)]
    loaded: dict[str, httpx.Response] = {}
    while todo:
        path = todo.pop()
        if path in loaded:
            continue
        loaded[path] = answer = api.get(path)
        if path.endswith(".js"):
            todo += [urljoin(path, module) for module in IMPORT.findall(answer.text)]
    return loaded


def shipped_static_files() -> set[str]:
    """The files under static/ that the wheel holds, by URL path, as setuptools globs them."""
    pyproject = tomllib.loads(PYPROJECT.read_text())
    globs = pyproject["tool"]["setuptools"]["package-data"]["jobplane"]
    files = {path for pattern in globs for path in PACKAGE_DIR.glob(pattern) if path.is_file()}
    return {f"/{path.relative_to(PACKAGE_DIR)}" for path in files if STATIC_DIR in path.parents}


def test_every_module_the_page_loads_is_served_as_javascript(api: httpx.Client) -> None:
    # When the page and everything it loads are fetched
    files = page_files(api)
    # Then main.js and the modules it imports, transitively, are all there
    modules = {path for path in files if path.endswith(".js")}
    assert {
        "/static/js/main.js",
        "/static/js/api.js",
        "/static/js/live.js",
        "/static/js/workflows.js",
        "/static/js/workflow-panel.js",
    } <= modules
    # And each one answers 200 as JavaScript, the stylesheet as CSS
    for path, answer in files.items():
        assert answer.status_code == 200, path
        kind = answer.headers["content-type"].split(";")[0]
        assert kind in (JAVASCRIPT if path.endswith(".js") else ("text/css",)), (path, kind)


def test_the_wheel_ships_exactly_the_files_the_page_loads(api: httpx.Client) -> None:
    # Given what the page loads, and index.html itself (served at /)
    loaded = {*page_files(api), "/static/index.html"}
    # Then the wheel's static files are those: none missing from the package-data globs,
    # and none more (the type checker's package.json and tsconfig.json stay out)
    assert shipped_static_files() == loaded


def test_every_element_the_modules_look_up_is_on_the_page(api: httpx.Client) -> None:
    # Given the page and its modules, as served
    files = page_files(api)
    page = api.get("/").text
    scripts = "".join(answer.text for path, answer in files.items() if path.endswith(".js"))
    # Then every id a module looks up (a missing one stops the whole page at start-up) is
    # in index.html, or made by a module: the workflows view's list and panel among them
    wanted = set(LOOKUP.findall(scripts))
    present = set(re.findall(r'\bid="([^"]+)"', page)) | set(CREATED_ID.findall(scripts))
    assert {"workflows", "workflow-rows", "wf-filter-status", "wf-panel", "wf-panel-body"} <= wanted
    assert wanted - present == set()
