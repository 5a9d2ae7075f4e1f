"""The admin commands' HTTP client: the API at ``--url`` with ``--token``."""

from __future__ import annotations

from typing import Any, NoReturn

import click
import httpx

#: Exit codes scripts can rely on.
EXIT_OK = 0
EXIT_API_ERROR = 1  #: the API refused the request (4xx): the message says why
EXIT_USAGE = 2  #: bad command line (click's own code)
EXIT_UNREACHABLE = 3  #: the API could not be reached, or failed (5xx)
EXIT_NOT_FOUND = 4  #: no such task


class Client:
    def __init__(self, url: str, token: str | None, *, timeout: float = 30.0) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout)

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """The JSON answer of a successful request; otherwise exit with a clear message.

        Query parameters that are None are left out.
        """
        if "params" in kwargs:
            kwargs["params"] = {k: v for k, v in kwargs["params"].items() if v is not None}
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as error:
            fail(f"cannot reach the API at {self.http.base_url}: {error}", EXIT_UNREACHABLE)
        if response.is_success:
            return response.json()
        try:
            message = response.json().get("message") or response.text
        except ValueError:
            message = response.text
        code = EXIT_NOT_FOUND if response.status_code == 404 else EXIT_API_ERROR
        if response.status_code >= 500:
            code = EXIT_UNREACHABLE
        fail(f"{response.status_code}: {message}", code)


def fail(message: str, code: int) -> NoReturn:
    click.secho(f"error: {message}", fg="red", err=True)
    raise SystemExit(code)
