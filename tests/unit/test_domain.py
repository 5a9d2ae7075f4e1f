"""Pure rules: state transitions, percent, retry backoff, CLI parameter parsing."""

from __future__ import annotations

import pytest
from dramatiq.middleware import TimeLimitExceeded

from jobplane import job
from jobplane.api.schemas import percent
from jobplane.cli.admin import parse_param
from jobplane.domain import ALLOWED_FROM, TERMINAL_STATES, TaskCancelled, TaskStatus, can_transition
from jobplane.registry import InvalidJobSpec, JobSpec, known_types
from jobplane.settings import Settings
from jobplane.workers.retries import backoff_seconds, deserves_retry


def test_terminal_states_change_only_through_an_explicit_retry() -> None:
    for terminal in TERMINAL_STATES:
        allowed = {target for target in TaskStatus if can_transition(terminal, target)}
        assert allowed <= {TaskStatus.PENDING}, terminal
    assert not can_transition(TaskStatus.COMPLETED, TaskStatus.PENDING)


def test_only_a_pending_task_can_start_and_only_a_running_one_can_complete() -> None:
    assert ALLOWED_FROM[TaskStatus.RUNNING] == {TaskStatus.PENDING}
    assert ALLOWED_FROM[TaskStatus.COMPLETED] == {TaskStatus.RUNNING}
    assert ALLOWED_FROM[TaskStatus.CANCELLED] == {TaskStatus.PENDING, TaskStatus.RUNNING}


@pytest.mark.parametrize(
    ("progress", "total", "status", "expected"),
    [
        (1500, 5000, "running", 30),
        (0, 0, "running", 0),
        (0, 0, "completed", 100),
        (7, 7, "running", 100),
        (9, 7, "running", 100),
        (1, 3, "running", 33),
    ],
)
def test_percent_derives_from_progress_and_total(
    progress: int, total: int, status: str, expected: int
) -> None:
    assert percent(progress, total, status) == expected


def _spec(**options: object) -> JobSpec:
    return JobSpec(name="t", fn=lambda: None, **options)  # type: ignore[arg-type]


def test_backoff_doubles_from_one_second_and_is_capped() -> None:
    spec = _spec(min_backoff=1.0, max_backoff=5.0)
    delays = [backoff_seconds(spec, n, jitter=0) for n in (1, 2, 3, 4)]
    assert delays == [1.0, 2.0, 4.0, 5.0]


@pytest.mark.parametrize("retry_number", [1_025, 10**6, 10**100])
def test_the_backoff_of_a_huge_retry_number_is_the_cap(retry_number: int) -> None:
    spec = _spec(min_backoff=1.0, max_backoff=300.0)
    assert backoff_seconds(spec, retry_number, jitter=0) == 300.0
    assert 300.0 <= backoff_seconds(spec, retry_number) <= 330.0


def test_jitter_never_makes_a_retry_earlier_than_its_backoff() -> None:
    spec = _spec()
    for _ in range(200):
        assert 2.0 <= backoff_seconds(spec, 2) <= 2.2


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_retries": -1}, "max_retries must be between 0 and 100, not -1"),
        ({"max_retries": 101}, "max_retries must be between 0 and 100, not 101"),
        ({"min_backoff": -1.0}, "need 0 <= min_backoff <= max_backoff"),
        ({"min_backoff": 10.0, "max_backoff": 5.0}, "need 0 <= min_backoff <= max_backoff"),
    ],
)
def test_a_job_declared_with_retries_or_backoff_out_of_range_fails_at_import_with_the_reason(
    options: dict[str, float], message: str
) -> None:
    with pytest.raises(InvalidJobSpec, match=f"job 'bad.retries': {message}"):
        job("bad.retries", **options)(lambda: None)  # type: ignore[arg-type]
    assert "bad.retries" not in known_types()


def test_the_bounds_of_max_retries_are_accepted() -> None:
    assert _spec(max_retries=0).max_retries == 0
    assert _spec(max_retries=100).max_retries == 100


def test_retry_for_limits_which_errors_are_retried() -> None:
    spec = _spec(retry_for=(ConnectionError,))
    assert deserves_retry(spec, ConnectionError())
    assert not deserves_retry(spec, ValueError())
    assert deserves_retry(_spec(), ValueError())
    assert not deserves_retry(_spec(), KeyboardInterrupt())
    assert not deserves_retry(_spec(), TaskCancelled())


def test_a_time_limit_is_a_failed_attempt_that_follows_the_retry_policy() -> None:
    assert deserves_retry(_spec(), TimeLimitExceeded())
    assert not deserves_retry(_spec(retry_for=(ConnectionError,)), TimeLimitExceeded())


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("days=60", ("days", 60)),
        ("overwrite=false", ("overwrite", False)),
        ("name=Taipei", ("name", "Taipei")),
        ("ids=[1,2]", ("ids", [1, 2])),
        ("empty=", ("empty", "")),
    ],
)
def test_cli_params_parse_as_json_or_text(text: str, expected: tuple[str, object]) -> None:
    assert parse_param(text) == expected


def test_settings_read_the_environment_with_the_jobplane_prefix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("JOBPLANE_DATABASE_URL", "postgresql+psycopg://u@h/db")
    monkeypatch.setenv("JOBPLANE_JOBS", "myjobs.reports, myjobs.mail ,")
    monkeypatch.setenv("JOBPLANE_API_TOKEN", "")
    settings = Settings()
    assert settings.database_url == "postgresql+psycopg://u@h/db"
    assert settings.job_modules == ["myjobs.reports", "myjobs.mail"]
    assert settings.api_token is None
    assert Settings().default_timeout == 4 * 3600
