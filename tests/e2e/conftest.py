"""Fixtures of the end-to-end tests: the installed wheel, empty databases."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import services
from tests.e2e import install

_databases = itertools.count()


@pytest.fixture(scope="session")
def plain_install(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment with the wheel installed without extras.

    One per session: building and installing the wheel is slow, and no test changes
    what is installed.
    """
    workdir = tmp_path_factory.mktemp("plain-install")
    return install.install(install.build_wheel(workdir), workdir)


@pytest.fixture
def empty_pg_url(postgres: None) -> Iterator[str]:
    """A PostgreSQL database of this test's own with no schema: migrate has all to do."""
    name = f"jobplane_e2e_empty_{os.getpid()}_{next(_databases)}"
    services.admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    services.admin_execute(f'CREATE DATABASE "{name}"')
    yield services.pg_url(name)
    services.admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
