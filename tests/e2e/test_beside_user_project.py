"""jobplane installed into a user's project and database, beside the user's own.

The user's project has packages named as jobplane's folders are (``app``, ``workers``,
``migrations``), its own ``tasks`` table and its own Alembic history in
``alembic_version``: jobplane migrates and runs every process from the project's
directory, runs the user's job (which imports the user's ``app.models``), and leaves the
user's tables exactly as they were.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, text

from jobplane.db import make_engine
from jobplane.migrate import MIGRATIONS
from tests import catalog
from tests.e2e.install import HIDDEN, INSTALL_TEST_TIMEOUT
from tests.e2e.platform import Platform
from tests.e2e.test_lifecycle import finished, submit
from tests.e2e.test_plain_install import wait_for_a_leader

pytestmark = [pytest.mark.slow, pytest.mark.timeout(INSTALL_TEST_TIMEOUT)]

#: The user's project: module path -> source.
PROJECT = {
    "app/__init__.py": "",
    "app/models.py": '''
"""The user's own models: their tasks table, named as jobplane's was before 0008."""
from sqlalchemy import String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Task(Base):
    __tablename__ = "tasks"
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String)


def headline(title: str) -> str:
    return title.upper()
''',
    "app/tasks.py": '''
"""The user's job module (JOBPLANE_JOBS=app.tasks)."""
import os

from sqlalchemy import create_engine, select

import migrations
import workers
from app import models
from jobplane import job


@job("user.headlines")
def headlines(prefix: str) -> dict:
    engine = create_engine(os.environ["JOBPLANE_DATABASE_URL"])
    with engine.connect() as conn:
        titles = conn.execute(select(models.Task.title).order_by(models.Task.id)).scalars()
        found = [prefix + models.headline(title) for title in titles]
    engine.dispose()
    return {"headlines": found, "packages": [workers.NAME, migrations.NAME]}
''',
    "workers/__init__.py": 'NAME = "the user\'s workers"\n',
    "migrations/__init__.py": 'NAME = "the user\'s migrations"\n',
}
#: The user's database before jobplane: their tasks table (with an index named as
#: SQLAlchemy names it, as jobplane's old one was), and their Alembic history.
USER_SCHEMA = """
CREATE TABLE tasks (id serial PRIMARY KEY, title text NOT NULL,
                    created_at timestamptz NOT NULL DEFAULT now());
CREATE INDEX ix_tasks_created_at ON tasks (created_at);
INSERT INTO tasks (title, created_at) VALUES ('write the roadmap', '2026-11-30 09:00Z'),
                                             ('ship it', '2026-12-01 17:30Z');
CREATE TABLE alembic_version (version_num varchar(32) NOT NULL,
                              CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num));
INSERT INTO alembic_version VALUES ('user_0007');
"""
USER_TABLES = ("tasks", "alembic_version")


def make_project(root: Path) -> Path:
    for name, source in PROJECT.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source.lstrip())
    return root


def project_platform(
    platform_factory: Callable[..., Platform],
    installed: Path,
    project: Path,
    database_url: str,
    broker_url: str,
    **settings: str,
) -> Platform:
    """jobplane's processes as a user's project runs them: the ``jobplane`` installed in
    the venv ``installed``, started in ``project`` with the project's packages on the
    path, and nothing of this checkout."""
    platform = platform_factory(
        database_url,
        broker_url,
        command=[str(installed / "bin" / "jobplane")],
        cwd=project,
        **settings,
    )
    for name in HIDDEN:
        platform.env.pop(name, None)
    platform.env["PYTHONPATH"] = str(project)  # the project's packages, as its own runs see them
    platform.env["PYTHONDONTWRITEBYTECODE"] = "1"  # nothing written into the project
    return platform


def users_objects(engine: Engine) -> dict[str, Any]:
    """The user's tables exactly (definitions and rows), their sequence's position, and
    every object in public that is not jobplane's."""
    with engine.connect() as conn:
        return {
            "tables": {name: catalog.pg_table(conn, name) for name in USER_TABLES},
            "sequence": conn.execute(text("SELECT last_value FROM tasks_id_seq")).scalar(),
            "others": [
                entry
                for entry in catalog.object_names(conn, "public")
                if not entry[1].startswith("jobplane_")
            ],
        }


def test_jobplane_migrates_and_runs_beside_a_users_project_and_leaves_its_tables_alone(
    plain_install: Path,
    empty_pg_url: str,
    redis_url: str,
    platform_factory: Callable[..., Any],
    tmp_path: Path,
) -> None:
    # Given a user's project with packages app, workers and migrations, and the user's
    # database with their own tasks table and Alembic history at user_0007
    project = make_project(tmp_path / "project")
    engine = make_engine(empty_pg_url)
    with engine.begin() as conn:
        conn.exec_driver_sql(USER_SCHEMA)
    before = users_objects(engine)
    platform = project_platform(
        platform_factory, plain_install, project, empty_pg_url, redis_url, jobs="app.tasks"
    )

    # When jobplane migrates, and every process starts from the project
    platform.migrate()
    relay, scheduler = platform.start_every_process()

    # Then the user's job runs with the user's packages, every process is up, and the
    # user's tables, rows and history are exactly as they were
    client = platform.client()
    done = finished(client, submit(client, "user.headlines", params={"prefix": "> "}))
    assert (done["status"], done["result"]) == (
        "completed",
        {
            "headlines": ["> WRITE THE ROADMAP", "> SHIP IT"],
            "packages": ["the user's workers", "the user's migrations"],
        },
    ), done
    wait_for_a_leader(relay, scheduler)
    assert relay.popen.poll() is None, relay.log()
    after = users_objects(engine)
    with engine.connect() as conn:
        jobplane_version = conn.execute(text("SELECT * FROM jobplane_alembic_version")).all()
    engine.dispose()
    assert after == before
    assert before["tables"]["tasks"]["rows"] and before["others"]
    assert jobplane_version == [(ScriptDirectory(str(MIGRATIONS)).get_current_head(),)]
