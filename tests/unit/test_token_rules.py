"""Weak API tokens are refused when the settings are read; Host allow-lists are checked."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from jobplane.settings import Settings

STRONG = "9f1c2e7a5b3d4f60"  # 16 characters, the shortest accepted


@pytest.mark.parametrize("variable", ["JOBPLANE_API_TOKEN", "JOBPLANE_READ_ONLY_TOKEN"])
@pytest.mark.parametrize(
    ("token", "why"),
    [
        ("change-me", "placeholder"),
        ("CHANGE_ME", "placeholder"),
        ("changeme", "placeholder"),
        ("secret", "placeholder"),
        ("password", "placeholder"),
        ("token", "placeholder"),
        ("x" * 40, "placeholder"),
        ("9f1c2e7a5b3d4f6", "too short (15 characters, at least 16)"),
    ],
)
def test_a_weak_token_is_refused_naming_its_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, token: str, why: str
) -> None:
    # Given a weak token in the environment (beside a strong read-write one)
    if variable == "JOBPLANE_READ_ONLY_TOKEN":
        monkeypatch.setenv("JOBPLANE_API_TOKEN", STRONG + "-rw")
    monkeypatch.setenv(variable, token)

    # When the settings are read, they are refused, for that variable, saying why
    with pytest.raises(ValidationError) as refused:
        Settings()
    (problem,) = refused.value.errors()
    assert "JOBPLANE_" + "_".join(map(str, problem["loc"])).upper() == variable
    assert why in problem["msg"]
    assert "openssl rand -hex 32" in problem["msg"]


def test_a_strong_token_is_kept_without_stray_whitespace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBPLANE_API_TOKEN", f"  {STRONG}\n")
    assert Settings().api_token == STRONG
    monkeypatch.setenv("JOBPLANE_API_TOKEN", "")
    assert Settings().api_token is None


@pytest.mark.parametrize(
    "hosts", ["jobs.example.com", "jobs.example.com:8443, [::1]:8000,127.0.0.1", "*", ""]
)
def test_allowed_hosts_take_names_with_optional_ports(hosts: str) -> None:
    assert Settings(allowed_hosts=hosts).allowed_hosts == hosts


@pytest.mark.parametrize("entry", ["https://jobs.example.com", "jobs.example.com/api", "a b"])
def test_allowed_hosts_refuse_what_is_not_a_host_name(entry: str) -> None:
    with pytest.raises(ValidationError, match="is not a host name"):
        Settings(allowed_hosts=entry)
