"""The app's engine and the request's session (a FastAPI dependency)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends
from sqlalchemy import create_engine
from sqlalchemy.orm import Session, sessionmaker

#: The variable jobplane reads too: the app's tables and jobplane's are in one database,
#: which is what lets a report and its job commit in one transaction.
DATABASE_URL = os.environ.get("JOBPLANE_DATABASE_URL", "sqlite:///./jobplane.db")

engine = create_engine(DATABASE_URL)
SessionLocal = sessionmaker(engine, expire_on_commit=False)


def get_session() -> Iterator[Session]:
    with SessionLocal() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]
