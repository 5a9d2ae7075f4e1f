"""Configuration from the environment (prefix ``JOBPLANE_``).

Every process reads the same variables; ``get_settings()`` caches one instance. Only the
composition roots call it (the CLI, and ``jobplane.workers.boot``, which Dramatiq imports
in each worker process); everything else is given its settings.
"""

from __future__ import annotations

import re
from functools import lru_cache

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from jobplane.domain import MAX_RETRIES

FOUR_HOURS = 4 * 3600
BROKER_SCHEMES = ("memory", "redis", "rediss", "unix", "amqp", "amqps")
SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
#: A Host allow-list entry: ``*``, or a name or address with an optional port.
HOST_ENTRY = re.compile(r"\*|(?:[A-Za-z0-9_.-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?")
#: The shortest API token accepted (a guess must be out of reach).
MIN_TOKEN_LENGTH = 16
#: Tokens refused whatever their length (compared lowercase, letters and digits only):
#: the ones examples and compose files are written with.
PLACEHOLDER_TOKENS = frozenset(
    {"changeme", "changemeplease", "secret", "password", "token", "apitoken", "replaceme"}
)
MAKE_A_TOKEN = "make one with `openssl rand -hex 32`"


class Settings(BaseSettings):
    """All of jobplane's settings; each is ``JOBPLANE_<NAME>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="JOBPLANE_", extra="ignore")

    #: SQLAlchemy URL: ``sqlite:///./jobplane.db`` or ``postgresql+psycopg://user@host/db``.
    database_url: str = "sqlite:///./jobplane.db"
    #: ``memory://`` (in-process, ``jobplane dev`` only), ``redis://host:6379/0``, ``amqp://…``.
    broker_url: str = "memory://"
    #: When set, every ``/api/`` route needs ``Authorization: Bearer <token>``. At least
    #: ``MIN_TOKEN_LENGTH`` characters, and no placeholder such as ``change-me``.
    api_token: str | None = None
    #: Optional second token that may only read: GET routes accept it, POST routes
    #: answer 403. Needs ``api_token`` to be set as well; the same rules.
    read_only_token: str | None = None
    #: Comma-separated Host names the API answers (``name`` or ``name:port``; ``*``: any).
    #: Empty: any, except that ``jobplane api`` / ``dev`` bound to loopback without a
    #: token answer only the loopback names (a DNS-rebinding page cannot reach them).
    allowed_hosts: str = ""
    #: Dashboard event streams (``/api/admin/events``) one API process serves at once;
    #: one more is answered 503 with ``Retry-After``.
    max_event_streams: int = Field(16, ge=1)
    #: Long polls (``GET /api/tasks/{id}?wait=``) one API process holds at once; one
    #: more is answered 503 with ``Retry-After``.
    max_task_waits: int = Field(1000, ge=1)
    #: Comma-separated import paths of the user's job modules.
    jobs: str = ""
    #: Register the built-in ``demo.*`` jobs (``jobplane dev`` turns them on, as do the
    #: tests); off, submitting one is an unknown job type.
    demo_jobs: bool = False
    #: Comma-separated queues a worker consumes (default: every registered job's queue);
    #: ``jobplane worker --queues`` overrides it.
    worker_queues: str = ""
    #: Where the admin CLI finds the API.
    url: str = "http://127.0.0.1:8000"
    #: PostgreSQL schema that holds every one of jobplane's objects (tables, indexes,
    #: sequences, the trigger and its function, the version table); ``jobplane migrate``
    #: creates it if missing. None (the default): the connection's default schema,
    #: normally ``public``. A lowercase SQL name. SQLite has no schemas: a database URL
    #: of SQLite with this set is refused when the settings are read.
    db_schema: str | None = None

    #: Default time limit of a job, in seconds.
    default_timeout: int = Field(FOUR_HOURS, gt=0)
    #: Default number of retries after a failed attempt (0 to ``MAX_RETRIES``, 100).
    default_max_retries: int = Field(3, ge=0, le=MAX_RETRIES)

    #: Outbox rows the relay publishes per transaction.
    relay_batch_size: int = Field(500, gt=0)
    #: Seconds the relay waits between scans when nothing wakes it (SQLite polls at this rate).
    relay_poll_interval: float = Field(1.0, gt=0)
    #: Longest back-off, in seconds, of a relay whose broker is down.
    relay_max_backoff: float = Field(10.0, gt=0)
    #: Messages of one queue the broker may hold not yet fetched by a worker: the relay
    #: publishes to a queue only below this, and leaves the rest in the outbox, highest
    #: priority first. A task waits behind at most this many lower-priority tasks that
    #: were published before it (plus what the workers prefetched).
    relay_window: int = Field(500, gt=0)
    #: Seconds between the relay's looks while rows wait for room in a queue's window.
    relay_window_interval: float = Field(0.05, gt=0)
    #: Seconds between the maintenance leader's recovery passes (lost workers, lost
    #: messages).
    sweep_interval: float = Field(5.0, gt=0)
    #: Seconds between a worker's heartbeats for the tasks it runs.
    heartbeat_interval: float = Field(5.0, gt=0)
    #: A running task whose heartbeat is older than this (seconds) is recovered.
    heartbeat_timeout: float = Field(60.0, gt=0)
    #: A published task still unclaimed this many seconds after it was due is published
    #: again if the broker no longer holds its message (the backstop for a broker that
    #: lost some messages but not its epoch). Messages still queued are never republished.
    unclaimed_after: float = Field(60.0, gt=0)
    #: Published, unclaimed tasks past ``unclaimed_after`` that one sweep checks on the
    #: broker (one query, one broker round trip); a longer backlog takes several sweeps.
    unclaimed_check_batch: int = Field(2000, gt=0)

    #: Finished tasks (with their logs) are deleted this many days after they ended.
    retention_days: float = Field(7.0, gt=0)
    #: Seconds between the maintenance leader's retention clean-ups (also one when a
    #: process starts to lead).
    retention_interval: float = Field(3600.0, gt=0)
    #: Finished tasks the clean-up deletes per transaction.
    retention_batch_size: int = Field(500, gt=0)
    #: How often a worker looks for cancellations of the tasks it runs (seconds).
    cancel_check_interval: float = Field(0.5, gt=0)
    #: Seconds a stopping worker (SIGTERM) lets running jobs finish; the rest go back
    #: to pending without counting the attempt.
    shutdown_grace: float = Field(30.0, ge=0)
    #: Per-job-type concurrency limits that override the decorator's ``concurrency``,
    #: as JSON: ``{"reports.build": 4}``; 0 removes a limit.
    concurrency: dict[str, int] = Field(default_factory=dict)

    #: Seconds to open a PostgreSQL connection (libpq's ``connect_timeout``).
    db_connect_timeout: int = Field(5, ge=1)
    #: Seconds a statement may run on PostgreSQL (``statement_timeout``; 0: no limit).
    db_statement_timeout: float = Field(30.0, ge=0)
    #: Seconds a transaction may sit idle (``idle_in_transaction_session_timeout``; 0: no
    #: limit).
    db_idle_in_transaction_timeout: float = Field(60.0, ge=0)
    #: Seconds to wait for a free pooled connection; the API answers 503 after it.
    db_pool_timeout: float = Field(5.0, gt=0)
    #: Statement timeout of ``jobplane migrate``, in seconds (0: no limit).
    migrate_statement_timeout: float = Field(0.0, ge=0)
    #: Statement timeout of the retention clean-up's deletes, in seconds (0: no limit).
    maintenance_statement_timeout: float = Field(600.0, ge=0)
    #: Seconds a PostgreSQL or Redis connection is idle before TCP keepalive probes start
    #: (on both ends: PostgreSQL's session gets the same values).
    tcp_keepalive_idle: int = Field(5, ge=1)
    #: Seconds between two keepalive probes.
    tcp_keepalive_interval: int = Field(2, ge=1)
    #: Unanswered keepalive probes after which the connection is dropped.
    tcp_keepalive_count: int = Field(3, ge=1)
    #: Seconds sent data may stay unacknowledged before the connection is dropped
    #: (``TCP_USER_TIMEOUT``; 0: the operating system's, about 15 minutes).
    tcp_user_timeout: float = Field(10.0, ge=0)
    #: Seconds to open a Redis connection.
    redis_connect_timeout: float = Field(5.0, gt=0)
    #: Seconds a Redis command waits for its reply.
    redis_socket_timeout: float = Field(10.0, gt=0)
    #: Seconds after which an idle Redis connection is PINGed before its next use.
    redis_health_check_interval: int = Field(15, ge=0)

    @field_validator("broker_url")
    @classmethod
    def _known_broker(cls, value: str) -> str:
        if value.split(":", 1)[0] not in BROKER_SCHEMES:
            raise ValueError(
                f"unsupported broker URL {value!r}: use memory://, redis:// or amqp://"
            )
        return value

    @field_validator("api_token", "read_only_token")
    @classmethod
    def _strong_token(cls, value: str | None) -> str | None:
        # Empty means none; a token copied from a file keeps no stray newline.
        token = (value or "").strip()
        if not token:
            return None
        if _normalised(token) in PLACEHOLDER_TOKENS or len(set(token)) == 1:
            raise ValueError(f"{token!r} is a placeholder, not a secret: {MAKE_A_TOKEN}")
        if len(token) < MIN_TOKEN_LENGTH:
            raise ValueError(
                f"too short ({len(token)} characters, at least {MIN_TOKEN_LENGTH}): {MAKE_A_TOKEN}"
            )
        return token

    @field_validator("allowed_hosts")
    @classmethod
    def _plain_host_names(cls, value: str) -> str:
        for name in _names(value):
            if not HOST_ENTRY.fullmatch(name):
                raise ValueError(
                    f"{name!r} is not a host name: give a name, optionally with its port"
                    " (example.com, example.com:8443, [::1]:8000), or * for any"
                )
        return value

    @field_validator("db_schema")
    @classmethod
    def _plain_schema_name(cls, value: str | None) -> str | None:
        # A plain name needs no quoting in the SQL and libpq options it goes into.
        if value and not SCHEMA_NAME.fullmatch(value):
            raise ValueError(
                f"JOBPLANE_DB_SCHEMA {value!r}: use lowercase letters, digits and _ "
                "(at most 63, not starting with a digit)"
            )
        return value or None

    @model_validator(mode="after")
    def _schema_needs_postgresql(self) -> Settings:
        if self.db_schema is not None and self.is_sqlite:
            raise ValueError("JOBPLANE_DB_SCHEMA is for PostgreSQL; SQLite has no schemas")
        return self

    @model_validator(mode="after")
    def _read_only_token_needs_api_token(self) -> Settings:
        if self.read_only_token is not None and self.api_token is None:
            raise ValueError("JOBPLANE_READ_ONLY_TOKEN needs JOBPLANE_API_TOKEN to be set too")
        if self.read_only_token is not None and self.read_only_token == self.api_token:
            raise ValueError("JOBPLANE_READ_ONLY_TOKEN must differ from JOBPLANE_API_TOKEN")
        return self

    @property
    def allowed_host_names(self) -> list[str]:
        """``allowed_hosts`` as a list of lowercase entries (empty: any Host)."""
        return [name.lower() for name in _names(self.allowed_hosts)]

    @property
    def job_modules(self) -> list[str]:
        return _names(self.jobs)

    @property
    def worker_queue_names(self) -> list[str]:
        """``worker_queues`` as a list (empty: every registered job's queue)."""
        return _names(self.worker_queues)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


def _normalised(token: str) -> str:
    return "".join(char for char in token.lower() if char.isalnum())


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once from the environment."""
    return Settings()
