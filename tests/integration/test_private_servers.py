"""The private servers of fault runs break the way the suite says, and only themselves."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
import redis

from tests.private_servers import PrivateServers


@pytest.fixture(scope="module")
def servers() -> Iterator[PrivateServers]:
    with PrivateServers() as started:
        yield started


def test_deleting_half_of_a_queue_keeps_the_other_half_and_the_epoch_key(
    servers: PrivateServers,
) -> None:
    client = redis.Redis("127.0.0.1", servers.redis.port, decode_responses=True)
    client.set("jobplane:broker-epoch", "e1")
    for n in range(10):
        client.rpush("dramatiq:default", f"m{n}")
        client.hset("dramatiq:default.msgs", f"m{n}", "message")

    deleted = servers.redis.delete_half_of_queue("default")

    kept = client.lrange("dramatiq:default", 0, -1)
    assert deleted == 5
    assert kept == ["m1", "m3", "m5", "m7", "m9"]
    assert sorted(client.hkeys("dramatiq:default.msgs")) == kept
    assert client.get("jobplane:broker-epoch") == "e1"


def test_a_read_only_redis_refuses_writes_until_it_is_writable_again(
    servers: PrivateServers,
) -> None:
    client = servers.redis.client()
    with servers.redis.read_only():
        with pytest.raises(redis.ReadOnlyError):
            client.set("key", "value")
    assert client.set("key", "value")


def test_a_redis_restart_loses_every_key(servers: PrivateServers) -> None:
    servers.redis.client().set("key", "value")
    servers.redis.restart()
    assert servers.redis.client().dbsize() == 0


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_postgresql_keeps_committed_rows_across_a_restart(
    servers: PrivateServers, mode: str
) -> None:
    def rows() -> object:
        with psycopg.connect(servers.postgres.admin_url) as conn:
            return conn.execute("SELECT count(*) FROM kept").fetchone()

    with psycopg.connect(servers.postgres.admin_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS kept (n int)")
        conn.execute("INSERT INTO kept VALUES (1)")
    before = rows()

    servers.postgres.restart(mode)

    assert rows() == before


def test_closing_stops_both_servers_and_deletes_their_files() -> None:
    servers = PrivateServers().start()
    url, directory = servers.postgres.admin_url, servers.directory
    servers.close()
    assert not directory.exists()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url, connect_timeout=2)
