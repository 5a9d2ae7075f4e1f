"""The front door over real HTTP: Host, origin, token and body size, before any body is read.

Some tests speak HTTP/1.1 on a raw socket, as a client that sends its headers and then
waits: an answer that comes before the body was sent proves the server did not wait
for (or read) the body.
"""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from jobplane.api.limits import MAX_BATCH_BODY, MAX_BODY, MiB
from jobplane.cli.exposure import serving_settings
from jobplane.settings import Settings

TOKEN = "front-door-test-token-0123"
READ_ONLY = "front-door-read-only-0123"
#: The body of the issue's test: an unauthenticated upload of 60 MB.
HUGE = 60_000_000
#: The longest the tests wait for an answer the server gives before it reads a body.
ANSWER_TIMEOUT = 10.0


@pytest.fixture
def api(api_factory: Callable[..., httpx.Client], pg_settings: Settings) -> httpx.Client:
    settings = pg_settings.model_copy(update={"api_token": TOKEN, "read_only_token": READ_ONLY})
    return api_factory(settings, token=TOKEN)


@contextmanager
def raw_request(client: httpx.Client, head: str) -> Iterator[socket.socket]:
    """A connection to ``client``'s server on which ``head`` (request line and headers)
    was sent, and nothing else yet."""
    url = urlsplit(str(client.base_url))
    with socket.create_connection((url.hostname or "", url.port or 80)) as sock:
        sock.settimeout(ANSWER_TIMEOUT)
        sock.sendall(head.replace("\n", "\r\n").encode() + b"\r\n")
        yield sock


def answer(sock: socket.socket) -> tuple[http.client.HTTPResponse, dict[str, Any]]:
    """The response read from ``sock`` (it fails after ``ANSWER_TIMEOUT`` without one)."""
    response = http.client.HTTPResponse(sock)
    response.begin()
    return response, json.loads(response.read())


def answer_to(client: httpx.Client, head: str) -> tuple[int, dict[str, Any]]:
    """The status and JSON body answered to ``head`` alone, no body sent."""
    with raw_request(client, head) as sock:
        response, body = answer(sock)
    return response.status, body


def closed_by_the_server(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def test_an_unauthenticated_60_mb_upload_is_refused_before_its_body_is_sent(
    api: httpx.Client,
) -> None:
    # Given a client that announces 60 MB to a write route, without a token
    head = (
        f"POST /api/tasks/batch HTTP/1.1\nHost: 127.0.0.1\nContent-Type: application/json\n"
        f"Content-Length: {HUGE}\n"
    )
    with raw_request(api, head) as sock:
        # When it waits before sending a byte of the body
        response, body = answer(sock)

        # Then the 401 has come already, in the JSON shape, and the server hangs up
        # rather than read the 60 MB
        assert response.status == 401
        assert body["error"] == "unauthorized"
        assert "Authorization: Bearer" in body["message"]
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert response.headers["Connection"] == "close"
        assert closed_by_the_server(sock)


def test_a_read_only_token_s_write_is_refused_before_its_body_is_sent(api: httpx.Client) -> None:
    head = (
        f"POST /api/tasks HTTP/1.1\nHost: 127.0.0.1\nAuthorization: Bearer {READ_ONLY}\n"
        "Content-Type: application/json\nContent-Length: 1000\n"
    )
    status, body = answer_to(api, head)
    assert (status, body["error"]) == (403, "forbidden")


def test_a_content_length_over_the_limit_is_413_without_reading_the_body(
    api: httpx.Client,
) -> None:
    # Given a client with the token that announces 2 MiB to the submit route
    head = (
        f"POST /api/tasks HTTP/1.1\nHost: 127.0.0.1\nAuthorization: Bearer {TOKEN}\n"
        f"Content-Type: application/json\nContent-Length: {2 * MiB}\n"
    )
    # Then it is told before it sends the body: the limit is 1 MiB
    assert answer_to(api, head) == (
        413,
        {
            "error": "request_too_large",
            "message": "the request body is larger than 1 MiB, the most POST /api/tasks accepts",
        },
    )
    # And the batch route's own limit is larger, and announced as such
    head = head.replace("/api/tasks ", "/api/tasks/batch ").replace(
        str(2 * MiB), str(MAX_BATCH_BODY + 1)
    )
    status, body = answer_to(api, head)
    assert status == 413
    assert "16 MiB, the most POST /api/tasks/batch accepts" in body["message"]


def test_a_chunked_body_is_cut_with_413_where_it_crosses_the_limit(api: httpx.Client) -> None:
    # Given a chunked submission (no Content-Length), sent 64 KiB at a time
    head = (
        f"POST /api/tasks HTTP/1.1\nHost: 127.0.0.1\nAuthorization: Bearer {TOKEN}\n"
        "Content-Type: application/json\nTransfer-Encoding: chunked\n"
    )
    chunk = 64 * 1024
    with raw_request(api, head) as sock:
        # When a little more than 1 MiB has been sent, and the body is not finished
        for _ in range(MAX_BODY // chunk + 1):
            sock.sendall(f"{chunk:x}\r\n".encode() + b" " * chunk + b"\r\n")
        # Then the answer is a 413, without waiting for the rest
        response, body = answer(sock)
    assert (response.status, body["error"]) == (413, "request_too_large")
    assert "1 MiB" in body["message"]
    # And nothing was written
    assert api.get("/api/admin/stats").json()["total"] == 0


def test_a_batch_may_be_larger_than_a_single_submission(api: httpx.Client) -> None:
    # Given 40 submissions of 50 KB params each: a 2 MB body
    batch = {"tasks": [{"type": "demo.echo", "params": {"text": "x" * 50_000}}] * 40}
    size = len(json.dumps(batch))
    assert MAX_BODY < size < MAX_BATCH_BODY
    # Then the batch route takes it, though it is over the limit of every other route
    accepted = api.post("/api/tasks/batch", json=batch)
    assert accepted.status_code == 201, accepted.text
    assert len(accepted.json()["taskIds"]) == 40


def test_with_allowed_hosts_another_host_is_400_but_the_probes_answer(
    api_factory: Callable[..., httpx.Client], pg_settings: Settings
) -> None:
    # Given an API that answers only jobs.example.com (any port) and api.example.com:8443
    settings = pg_settings.model_copy(
        update={"allowed_hosts": "jobs.example.com, api.example.com:8443"}
    )
    client = api_factory(settings)
    # Then those names are answered
    for host in ("jobs.example.com", "JOBS.example.com:8000", "api.example.com:8443"):
        assert client.get("/api/admin/stats", headers={"Host": host}).status_code == 200, host
    # And any other name gets a 400 in the JSON shape, also for the dashboard
    for host in ("evil.example", "api.example.com", "127.0.0.1:8000"):
        for path in ("/api/admin/stats", "/"):
            refused = client.get(path, headers={"Host": host})
            assert refused.status_code == 400, (host, path)
            assert refused.json()["error"] == "host_not_allowed"
            assert host in refused.json()["message"]
    # But health probes and the metrics scrape answer whatever the Host
    for path in ("/healthz", "/readyz", "/metrics"):
        assert client.get(path, headers={"Host": "10.0.0.7:8000"}).status_code == 200, path


def test_an_api_on_loopback_without_a_token_answers_only_the_loopback_names(
    api_factory: Callable[..., httpx.Client], pg_settings: Settings
) -> None:
    # Given the settings `jobplane api` serves with on 127.0.0.1, with no token
    client = api_factory(serving_settings(pg_settings, "127.0.0.1", 8000, insecure=False))
    # Then a page whose name was rebound to 127.0.0.1 cannot use it
    rebound = client.post("/api/tasks", json={"type": "demo.noop"}, headers={"Host": "a.evil"})
    assert (rebound.status_code, rebound.json()["error"]) == (400, "host_not_allowed")
    assert client.get("/api/admin/stats").json()["total"] == 0
    # While the machine's own names work
    for host in ("localhost:8000", "127.0.0.1:8000", "[::1]:8000", "localhost"):
        assert client.get("/api/admin/stats", headers={"Host": host}).status_code == 200, host
    # And with a token, or with JOBPLANE_ALLOWED_HOSTS set, the names are not limited so
    with_token = pg_settings.model_copy(update={"api_token": TOKEN})
    assert serving_settings(with_token, "127.0.0.1", 8000, insecure=False).allowed_hosts == ""
    chosen = pg_settings.model_copy(update={"allowed_hosts": "*"})
    assert serving_settings(chosen, "127.0.0.1", 8000, insecure=False).allowed_hosts == "*"


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site", "Origin": "http://other.127.0.0.1.nip.io"},
    ],
    ids=["other-origin", "null-origin", "cross-site", "same-site"],
)
def test_a_write_from_another_site_is_403_and_changes_nothing(
    pg_api: httpx.Client, headers: dict[str, str]
) -> None:
    # Given an API with no token and a pending task
    task_id = pg_api.post("/api/tasks", json={"type": "demo.noop", "delaySeconds": 600}).json()[
        "taskId"
    ]
    # When a page on another site makes the browser POST a body-less cancel
    forged = pg_api.post(f"/api/admin/tasks/{task_id}/cancel", headers=headers)
    # Then it is refused, and the task is still pending
    assert (forged.status_code, forged.json()["error"]) == (403, "cross_site_request")
    assert pg_api.get(f"/api/tasks/{task_id}").json()["status"] == "pending"
    # While reads from anywhere (what a GET can do is not guarded by an origin) still work
    assert pg_api.get(f"/api/tasks/{task_id}", headers=headers).status_code == 200


def test_a_write_from_the_api_s_own_pages_or_a_non_browser_client_is_accepted(
    pg_api: httpx.Client,
) -> None:
    own = f"http://{urlsplit(str(pg_api.base_url)).netloc}"
    for headers in (
        {"Origin": own, "Sec-Fetch-Site": "same-origin"},  # the dashboard
        {},  # curl, the CLI, the Python client
    ):
        task_id = pg_api.post(
            "/api/tasks", json={"type": "demo.noop", "delaySeconds": 600}, headers=headers
        ).json()["taskId"]
        cancelled = pg_api.post(f"/api/admin/tasks/{task_id}/cancel", headers=headers)
        assert cancelled.status_code == 200, (headers, cancelled.text)
