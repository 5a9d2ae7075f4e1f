"""The HTTP API: ``POST /reports`` stores a report and enqueues its job, ``GET`` reads it."""

from __future__ import annotations

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, ConfigDict, Field

from app.db import SessionDep
from app.jobs import generate_report
from app.models import Report

app = FastAPI(title="Reports")


class NewReport(BaseModel):
    title: str = Field(min_length=1, max_length=200)


class ReportOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    title: str
    status: str
    body: str | None
    task_id: str | None


@app.post("/reports", status_code=201)
def create_report(new: NewReport, session: SessionDep) -> ReportOut:
    """The report and its task commit together, or not at all: the job never looks for
    a report that is not there, and a report never waits for a job nobody enqueued."""
    with session.begin():
        report = Report(title=new.title)
        session.add(report)
        session.flush()  # assigns report.id, which the job is given
        report.task_id = generate_report.enqueue(session, report_id=report.id)
    return ReportOut.model_validate(report)


@app.get("/reports/{report_id}")
def read_report(report_id: int, session: SessionDep) -> ReportOut:
    report = session.get(Report, report_id)
    if report is None:
        raise HTTPException(status_code=404, detail=f"no report {report_id}")
    return ReportOut.model_validate(report)
