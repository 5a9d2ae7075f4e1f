"""What a job body asks of its context without the database: a retry, a fencing token,
one transaction."""

from __future__ import annotations

import math

import pytest
from sqlalchemy import create_engine

import jobplane
from jobplane.settings import Settings
from jobplane.workers.context import JobContext
from jobplane.workers.effects import TransactionAlreadyUsed


@pytest.fixture
def ctx() -> JobContext:
    return JobContext(
        task_id="t",
        task_type="demo.noop",
        params={},
        attempt=1,
        dispatch=7,
        engine=create_engine("sqlite://"),
        settings=Settings(),
    )


def test_retry_raises_the_request_with_its_delay_and_reason(ctx: JobContext) -> None:
    with pytest.raises(jobplane.RetryRequested) as raised:
        ctx.retry(delay=90, reason="rate limited")
    assert (raised.value.delay_seconds, raised.value.reason) == (90, "rate limited")
    assert str(raised.value) == "retry requested in 90 s: rate limited"


@pytest.mark.parametrize("delay", [-1, math.nan, math.inf, 10**9, "60"])
def test_retry_refuses_a_delay_that_is_not_a_sane_number_of_seconds(
    ctx: JobContext, delay: object
) -> None:
    with pytest.raises(ValueError, match="ctx.retry: delay must be between 0 and"):
        ctx.retry(delay=delay)  # type: ignore[arg-type]


def test_the_fence_token_is_the_dispatch_number(ctx: JobContext) -> None:
    assert ctx.fence_token == 7


def test_a_second_transaction_is_refused_before_touching_the_database(ctx: JobContext) -> None:
    ctx.transaction()
    with pytest.raises(TransactionAlreadyUsed, match="may open ctx.transaction\\(\\) once"):
        ctx.transaction()
