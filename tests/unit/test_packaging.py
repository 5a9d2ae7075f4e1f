"""The wheel's package list matches the folders: a sub-package missing from it would be
missing from every installation (setuptools cannot discover packages through package-dir)."""

from __future__ import annotations

import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _pyproject() -> dict[str, object]:
    with (REPO / "pyproject.toml").open("rb") as file:
        return tomllib.load(file)["tool"]["setuptools"]  # type: ignore[no-any-return]


def test_every_package_folder_is_in_the_wheel_and_nothing_else() -> None:
    setuptools = _pyproject()
    package_dir: dict[str, str] = setuptools["package-dir"]  # type: ignore[assignment]
    # Given every folder with an __init__.py under the mapped folders, by its import name
    found = set()
    for name, folder in package_dir.items():
        root = REPO / folder
        for init in root.rglob("__init__.py"):
            parts = init.parent.relative_to(root).parts
            if "__pycache__" in parts or "node_modules" in parts:
                continue
            found.add(".".join((name, *parts)))
    # Then the listed packages are exactly those
    assert sorted(setuptools["packages"]) == sorted(found)  # type: ignore[call-overload]


def test_only_jobplane_is_installed_at_the_top() -> None:
    setuptools = _pyproject()
    tops = {name.split(".")[0] for name in setuptools["packages"]}  # type: ignore[attr-defined]
    assert tops == {"jobplane"}
