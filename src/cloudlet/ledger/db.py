"""Database URLs and engines: SQLite (default) through aiosqlite, PostgreSQL through asyncpg.

Users write plain URLs (``sqlite:///~/ledger.db``, ``postgresql://user@host/db``); we pick
the async driver. asyncpg rather than psycopg 3: it is SQLAlchemy's reference asyncio dialect,
needs no libpq on the machine, and is the faster of the two on the small batched inserts
the ledger makes (it speaks the binary protocol and caches prepared statements). Behind
PgBouncer in transaction mode, add ``?prepared_statement_cache_size=0`` to the URL.

A ``?schema=NAME`` query parameter on a PostgreSQL URL puts every table in that schema
(created if missing) through the connection's ``search_path``: several deployments, or
parallel test runs, can share one database.

SQLite runs in WAL mode with ``synchronous=NORMAL``: a committed transaction survives the
process being killed (``kill -9``); only an operating-system crash or power loss may roll back
the last transactions. Readers (``cloudlet usage``) never block the server's writer. The
pysqlite driver's implicit transactions are replaced by explicit ``BEGIN`` (SQLAlchemy's
documented recipe), so that DDL is transactional too and migrations are atomic.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import platformdirs
from sqlalchemy import URL, event, make_url
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

_SCHEMA = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
IMMEDIATE = "cloudlet_sqlite_immediate"
_BUSY_TIMEOUT_MS = 30_000
_WAL = "PRAGMA journal_mode=WAL"
CONNECT_TIMEOUT_S = 10.0


def default_ledger_url() -> str:
    """SQLite in the user's data directory ($XDG_DATA_HOME/cloudlet/ledger.db on Linux)."""
    return f"sqlite:///{Path(platformdirs.user_data_dir('cloudlet', appauthor=False))}/ledger.db"


def parse_url(url: str) -> tuple[URL, str | None]:
    """The async driver's URL for ``url``, and the PostgreSQL schema it names (if any)."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            raise ValueError("the ledger needs a file: sqlite:///path/to/ledger.db")
        path = Path(parsed.database).expanduser()
        return parsed.set(drivername="sqlite+aiosqlite", database=str(path)), None
    if backend in ("postgresql", "postgres"):
        schema = parsed.query.get("schema")
        if isinstance(schema, tuple):
            raise ValueError("give ?schema= once")
        if schema is not None and not _SCHEMA.match(schema):
            raise ValueError("schema: expected lower-case letters, digits and underscores")
        parsed = parsed.difference_update_query(["schema"])
        return parsed.set(drivername="postgresql+asyncpg"), schema
    raise ValueError("expected sqlite:///path or postgresql://user@host/database")


def display_url(url: str) -> str:
    """``url`` without its password, for banners and logs."""
    return make_url(url).render_as_string(hide_password=True)


def password_of(url: str) -> str | None:
    """The URL's password, if any (to keep it out of messages)."""
    try:
        return make_url(url).password
    except Exception:  # not a URL: nothing to hide from it
        return None


def create_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """An async engine for ``url``; nothing connects until first use (no work at import)."""
    parsed, schema = parse_url(url)
    if parsed.get_backend_name() == "sqlite":
        assert parsed.database is not None
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(parsed, **kwargs)
        _sqlite_setup(engine)
        return engine
    connect_args: dict[str, Any] = kwargs.pop("connect_args", {})
    # asyncpg waits 60 s for a connection by default: a database that is down must be
    # reported within seconds (at start-up, and before a request waits on it).
    connect_args.setdefault("timeout", CONNECT_TIMEOUT_S)
    if schema is not None:
        connect_args["server_settings"] = {"search_path": schema}
    return create_async_engine(parsed, pool_pre_ping=True, connect_args=connect_args, **kwargs)


def schema_of(url: str) -> str | None:
    return parse_url(url)[1]


def _sqlite_setup(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _connect(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
        # Autocommit at the driver: SQLAlchemy's "begin" listener below issues BEGIN itself.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in (
            f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}",
            _WAL,
            "PRAGMA synchronous=NORMAL",
        ):
            try:
                cursor.execute(pragma)
            except Exception as exc:
                # Replicas opening a new file together: one of them switches it to WAL (which
                # then holds for the file, for every connection); SQLite may refuse the others
                # the lock for the switch at once rather than wait ("database is locked").
                if pragma != _WAL or "database is locked" not in str(exc):
                    raise
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(conn: Any) -> None:
        # IMMEDIATE takes the write lock first: concurrent migrators queue instead of racing.
        immediate = conn.get_execution_options().get(IMMEDIATE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
