"""Audit events stored per second, per backend, beside a bare insert of the same rows, same run.

For SQLite and (when one answers) PostgreSQL:
- bare: the same rows into a plain table with no index, no chain, no deduplication (executemany for
  SQLite, COPY for PostgreSQL), 1,000 per transaction: what the database itself costs;
- store: ``AuditStore.append`` (dedupe look-up, SHA-256 chain, indexes, head), 1,000 per batch;
- consumer: entries in the Redis audit stream (two events each, as an accept writes them) moved by
  ``AuditConsumer.drain``: read, store, acknowledge and delete, the path events take in production.

    python -m bench.audit [--events 200000] [--postgres postgresql://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import secrets
import sqlite3
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import redis

from bench.common import redis_for_bench
from gateway.audit.backends import open_store
from gateway.audit.chain import COLUMNS, row_values
from gateway.audit.consumer import AuditConsumer
from gateway.audit.stream import AuditRow, entry
from gateway.state import keys

BODY = '{"at":"2026-11-25T10:00:00.123Z","channel":"sms","status":"queued","type":"accepted"}'


def rows(n: int, tenant: str = "bench") -> list[AuditRow]:
    """n realistic rows (one member in fifty repeats, as members get several messages)."""
    now = int(time.time() * 1000)
    return [
        AuditRow(
            tenant,
            f"{now}-{i}.0",
            now + i,
            "accepted",
            f"ntf_{i:026d}",
            "sms",
            f"{i % 50_000:032x}",
            "+86138****5678",
            BODY,
        )
        for i in range(n)
    ]


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bare_sqlite(path: Path, data: list[AuditRow]) -> float:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute(f"CREATE TABLE bare ({COLUMNS})")

    def run() -> None:
        for i in range(0, len(data), 1000):
            conn.execute("BEGIN")
            conn.executemany(
                "INSERT INTO bare VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                [row_values(r, i + j, "", "") for j, r in enumerate(data[i : i + 1000])],
            )
            conn.execute("COMMIT")

    took = timed(run)
    conn.close()
    return took


def bare_postgres(url: str, data: list[AuditRow]) -> float:
    import psycopg

    with psycopg.connect(url) as conn:
        conn.execute(f"CREATE TABLE bare ({COLUMNS.replace(',', ' TEXT,')} TEXT)")
        conn.commit()

        def run() -> None:
            for i in range(0, len(data), 1000):
                with conn.cursor() as cur, cur.copy(f"COPY bare ({COLUMNS}) FROM STDIN") as copy:
                    for j, r in enumerate(data[i : i + 1000]):
                        copy.write_row(row_values(r, i + j, "", ""))
                conn.commit()

        return timed(run)


def store_append(url: str, data: list[AuditRow]) -> float:
    store = open_store(url)
    try:
        return timed(lambda: [store.append(data[i : i + 1000]) for i in range(0, len(data), 1000)])
    finally:
        store.close()


def consumer_drain(redis_url: str, url: str, events: int) -> float:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.flushdb()
    client.sadd(keys.tenants(), "bench")
    line = BODY + "\n" + BODY.replace('"accepted"', '"compliance"')
    with client.pipeline(transaction=False) as pipe:
        for i in range(events // 2):
            pipe.xadd(
                keys.audit("bench"),
                entry(
                    line,
                    member=f"{i % 50_000:032x}",
                    masked="+86138****5678",
                    channel="sms",
                    ntf_id=f"ntf_{i:026d}",
                ),
            )  # type: ignore[arg-type]
            if i % 5000 == 4999:
                pipe.execute()
        pipe.execute()
    store = open_store(url)
    consumer = AuditConsumer(client, store, name="bench", batch=1000)
    try:
        took = timed(lambda: consumer.drain(timeout=3600))
        assert store.count("bench") == events // 2 * 2
        return took
    finally:
        consumer.release()
        store.close()
        client.close()


def postgres_schema(base: str) -> tuple[str, Callable[[], None]] | None:
    import psycopg

    try:
        psycopg.connect(base, connect_timeout=3).close()
    except psycopg.OperationalError:
        return None
    schema = f"bench_{secrets.token_hex(4)}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")

    def drop() -> None:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")

    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options={quote(f'-csearch_path={schema}')}", drop


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = ap.parse_args()
    n = args.events
    data = rows(n)
    print(f"{n:,} events per measurement")
    print(
        f"{'backend':<10} {'bare insert/s':>14} {'store.append/s':>15} {'consumer/s':>11} {'store/bare':>11}"
    )
    with redis_for_bench() as redis_url, tempfile.TemporaryDirectory() as tmp:
        results: list[tuple[str, float, float, float]] = []
        d = Path(tmp)
        bare = bare_sqlite(d / "bare.sqlite3", data)
        appended = store_append(f"sqlite:///{d}/store.sqlite3", data)
        drained = consumer_drain(redis_url, f"sqlite:///{d}/consumer.sqlite3", n)
        results.append(("sqlite", bare, appended, drained))
        pg = postgres_schema(args.postgres)
        if pg is None:
            print(f"(no PostgreSQL at {args.postgres}: skipped)")
        else:
            url, drop = pg
            try:
                results.append(("postgres", bare_postgres(url, data), store_append(url, data), 0.0))
                drop()
                url, drop = postgres_schema(args.postgres) or (url, drop)
                results[-1] = (*results[-1][:3], consumer_drain(redis_url, url, n))
            finally:
                drop()
        for name, bare_s, store_s, consumer_s in results:
            print(
                f"{name:<10} {n / bare_s:>14,.0f} {n / store_s:>15,.0f} {n / consumer_s:>11,.0f} {bare_s / store_s:>10.2f}x"
            )


if __name__ == "__main__":
    main()
