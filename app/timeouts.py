"""Timeouts and TCP keepalives of every connection to PostgreSQL and Redis.

Without them a connection whose peer vanished (a network partition drops packets
silently: no reset ever arrives) blocks its caller until TCP gives up, about 15 minutes,
and even after the network is back a call waits for TCP's next retransmission, which
after a minute's outage comes tens of seconds later. With them:

- a call on a dead connection fails within ``tcp_user_timeout`` (data sent, no answer)
  or ``keepalive_idle + keepalive_interval * keepalive_count`` (waiting, nothing sent);
  the caller's own retry then takes a fresh connection, which works as soon as the
  network does;
- PostgreSQL, told the same values for the session, ends a partitioned client's session
  as quickly, and with it the session's advisory locks (the scheduler's leadership)
  and open transactions;
- the server ends a statement after ``statement`` seconds and a transaction left idle
  after ``idle_in_transaction`` seconds, so nothing holds locks for long.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jobplane.settings import Settings


@dataclass(frozen=True)
class Keepalive:
    """TCP keepalive and user timeout of a client socket (and of the server's session).

    A socket idle for ``idle`` s is probed every ``interval`` s; after ``count``
    unanswered probes, or once sent data stayed unacknowledged for ``user_timeout`` s,
    the connection is dropped (about 10 s with the defaults).
    """

    idle: int = 5  #: seconds of silence before the first probe
    interval: int = 2  #: seconds between probes
    count: int = 3  #: unanswered probes that end the connection
    user_timeout: float = 10.0  #: seconds sent data may stay unacknowledged (0: the OS's)

    @property
    def user_timeout_ms(self) -> int:
        return int(self.user_timeout * 1000)


@dataclass(frozen=True)
class PostgresTimeouts:
    """What every PostgreSQL connection of a process gets; defaults as documented.

    ``statement`` and ``idle_in_transaction`` are 0 for "no limit" (migrations).
    """

    connect: int = 5  #: seconds to open a connection (libpq rounds up to at least 2)
    statement: float = 30.0  #: seconds a statement may run on the server
    idle_in_transaction: float = 60.0  #: seconds a transaction may sit idle
    pool: float = 5.0  #: seconds to wait for a free pooled connection
    keepalive: Keepalive = Keepalive()

    @classmethod
    def from_settings(cls, settings: Settings) -> PostgresTimeouts:
        return cls(
            connect=settings.db_connect_timeout,
            statement=settings.db_statement_timeout,
            idle_in_transaction=settings.db_idle_in_transaction_timeout,
            pool=settings.db_pool_timeout,
            keepalive=keepalive_from(settings),
        )

    def for_migrations(self, settings: Settings) -> PostgresTimeouts:
        """The same, but with the migrations' own statement timeout (default: none)."""
        limit = settings.migrate_statement_timeout
        return replace(self, statement=limit, idle_in_transaction=limit)

    def libpq_params(self) -> dict[str, Any]:
        """The client side: libpq's connection parameters."""
        params: dict[str, Any] = {
            "connect_timeout": self.connect,
            "keepalives": 1,
            "keepalives_idle": self.keepalive.idle,
            "keepalives_interval": self.keepalive.interval,
            "keepalives_count": self.keepalive.count,
        }
        if self.keepalive.user_timeout_ms:
            params["tcp_user_timeout"] = self.keepalive.user_timeout_ms
        return params

    def server_options(self) -> str:
        """The server side, for the session: ``-c name=value`` settings for ``options``."""
        settings = {
            "statement_timeout": int(self.statement * 1000),
            "idle_in_transaction_session_timeout": int(self.idle_in_transaction * 1000),
            "tcp_keepalives_idle": self.keepalive.idle,
            "tcp_keepalives_interval": self.keepalive.interval,
            "tcp_keepalives_count": self.keepalive.count,
            "tcp_user_timeout": self.keepalive.user_timeout_ms,
        }
        return " ".join(f"-c {name}={value}" for name, value in settings.items())


@dataclass(frozen=True)
class RedisTimeouts:
    """What every Redis connection of a process gets; defaults as documented.

    ``socket`` bounds each command's wait for its reply. Nothing jobplane sends blocks
    on the server (Dramatiq fetches with a Lua script, not BLPOP), and the wake-up
    listener's ``get_message(timeout)`` sets its own shorter timeout per read, so the
    only replies that take long are those of a Redis that is gone.
    """

    connect: float = 5.0  #: seconds to open a connection
    socket: float = 10.0  #: seconds a command waits for its reply
    #: An idle pooled connection is PINGed before use after this many seconds, and a
    #: subscribed one every so often, so a dead one is found before a command needs it.
    health_check_interval: int = 15
    keepalive: Keepalive = Keepalive()

    @classmethod
    def from_settings(cls, settings: Settings) -> RedisTimeouts:
        return cls(
            connect=settings.redis_connect_timeout,
            socket=settings.redis_socket_timeout,
            health_check_interval=settings.redis_health_check_interval,
            keepalive=keepalive_from(settings),
        )

    def connection_options(self) -> dict[str, Any]:
        """Keyword arguments of ``redis.ConnectionPool.from_url`` / ``redis.Redis``.

        No command is retried by redis-py (``retry_on_timeout`` stays off): a fetch
        whose reply was lost has already moved its messages into this worker's
        unacked set, and fetching again would strand them there for as long as the
        worker lives. Every caller retries at its own level instead (Dramatiq's
        consumer restarts, the relay backs off, the ack sender and the wake-up
        listener try again).
        """
        options: dict[int, int] = {
            socket.TCP_KEEPIDLE: self.keepalive.idle,
            socket.TCP_KEEPINTVL: self.keepalive.interval,
            socket.TCP_KEEPCNT: self.keepalive.count,
        }
        if self.keepalive.user_timeout_ms:
            options[socket.TCP_USER_TIMEOUT] = self.keepalive.user_timeout_ms
        return {
            "socket_connect_timeout": self.connect,
            "socket_timeout": self.socket,
            "socket_keepalive": True,
            "socket_keepalive_options": options,
            "health_check_interval": self.health_check_interval,
            "retry_on_timeout": False,
        }


def keepalive_from(settings: Settings) -> Keepalive:
    return Keepalive(
        idle=settings.tcp_keepalive_idle,
        interval=settings.tcp_keepalive_interval,
        count=settings.tcp_keepalive_count,
        user_timeout=settings.tcp_user_timeout,
    )
