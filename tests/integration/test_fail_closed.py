"""Fail closed, through real `cloudlet serve` processes (docs/reliability.md lists each case).

The model is a remote one on a fake upstream (start-up takes a second, no llama.cpp load);
keys and ledger are real (SQLite or the PostgreSQL at 127.0.0.1), counters are the real Redis
or a proxy to it that a test can make hang. Servers bound to 0.0.0.0 get traffic on
127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import Server, free_port, start_server, stop_server
from tests.fakes_upstream import FakeUpstream

pytestmark = pytest.mark.slow

ADMIN = "admin-" + secrets.token_hex(8)
PG = "postgresql://root@127.0.0.1:5432/test"
REDIS = "redis://127.0.0.1:6379/0"
HI = {"model": "cloudy", "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 4}


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    fake = FakeUpstream(record=False).start()
    yield fake
    fake.stop()


def config(upstream: FakeUpstream, storage: str) -> str:
    return f"""
server: {{log_level: info}}
storage: {storage}
models:
  - name: cloudy
    engine: openai
    url: {upstream.url}
    price: {{input_per_mtok: 1, output_per_mtok: 2}}
"""


def serve_args(tmp: Path, text: str, *extra: str) -> list[str]:
    path = tmp / "cloudlet.yaml"
    path.write_text(text)
    return [sys.executable, "-m", "cloudlet", "serve", "--config", str(path), *extra]


def run_serve(
    tmp: Path, text: str, *extra: str, env: dict[str, str] | None = None, port: int = 0
) -> tuple[int, str]:
    """Run a `cloudlet serve` that is expected to refuse to start: (exit code, output)."""
    done = subprocess.run(
        serve_args(tmp, text, "--port", str(port or free_port()), *extra),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp,
        env={**os.environ, "COLUMNS": "200", "XDG_DATA_HOME": str(tmp / "data"), **(env or {})},
    )
    return done.returncode, done.stdout + done.stderr


def chat(server: Server, key: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.post(server.v1 + "/chat/completions", json=HI, headers=headers, timeout=30)


def admin(server: Server, method: str, path: str, **kw: object) -> httpx.Response:
    headers = {"Authorization": f"Bearer {ADMIN}"}
    return httpx.request(method, server.base_url + path, headers=headers, timeout=30, **kw)  # type: ignore[arg-type]


def error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("error:")]


# --- 1. auth fails closed -----------------------------------------------------------------------


def storages(tmp: Path) -> dict[str, str]:
    schema = "fc_" + secrets.token_hex(4)
    return {
        "sqlite": f"{{ledger: 'sqlite:///{tmp}/ledger.db'}}",
        "postgresql": f"{{ledger: '{PG}?schema={schema}'}}",
        "off": "{ledger: 'off'}",
    }


@pytest.mark.parametrize("ledger", ["sqlite", "postgresql", "off"])
def test_off_loopback_without_a_way_to_authenticate_refuses_to_start(
    ledger: str, tmp_path: Path, upstream: FakeUpstream
) -> None:
    code, output = run_serve(
        tmp_path, config(upstream, storages(tmp_path)[ledger]), "--host", "0.0.0.0"
    )
    assert code == 5, output
    (line,) = error_lines(output)
    assert "reachable from the network with no way to authenticate" in line
    assert "Traceback" not in output


@pytest.mark.parametrize("ledger", ["sqlite", "postgresql", "off"])
def test_off_loopback_no_200_without_a_key_in_any_config(
    ledger: str, tmp_path: Path, upstream: FakeUpstream
) -> None:
    server = start_server(
        tmp_path,
        config(upstream, storages(tmp_path)[ledger]),
        {"CLOUDLET_ADMIN_KEY": ADMIN},
        ["--host", "0.0.0.0"],
    )
    try:
        wait_for(lambda: "auth: api-key" in server.output(), "the banner")
        assert httpx.get(server.base_url + "/health").json()["auth"] == "api-key"
        for key in (None, "unused", "sk-cl-" + "x" * 43):
            assert chat(server, key).status_code == 401
            headers = {"Authorization": f"Bearer {key}"} if key else {}
            assert httpx.get(server.v1 + "/models", headers=headers).status_code == 401
        assert chat(server, ADMIN).status_code == 200
        keys = admin(server, "GET", "/admin/keys")
        if ledger == "off":  # the admin key authenticates; there are no keys to manage
            assert (keys.status_code, keys.json()["error"]["code"]) == (400, "ledger_off")
        else:
            assert keys.status_code == 200
            key = admin(server, "POST", "/admin/keys", json={"team": "t"}).json()["key"]
            assert chat(server, key).status_code == 200
        metrics = httpx.get(server.base_url + "/metrics").text
        assert 'cloudlet_auth_failures_total{reason="missing_key"} 2.0' in metrics
        assert 'cloudlet_auth_failures_total{reason="invalid_key"} 4.0' in metrics
    finally:
        stop_server(server)


def keys_cli(tmp: Path, ledger: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "cloudlet", "keys", *args, "--ledger", ledger],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=tmp,
    )
    return done.stdout


def wait_for(check: object, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_revoking_the_last_key_never_reopens(tmp_path: Path, upstream: FakeUpstream) -> None:
    ledger = f"sqlite:///{tmp_path}/ledger.db"
    server = start_server(tmp_path, config(upstream, f"{{ledger: '{ledger}'}}"))
    try:
        # The banner is printed once the socket serves, so /ready may answer a moment before.
        wait_for(lambda: "auth: open" in server.output(), "the banner")
        assert httpx.get(server.base_url + "/health").json()["auth"] == "open"
        assert chat(server, None).status_code == 200  # loopback, no key ever: open
        created = json.loads(keys_cli(tmp_path, ledger, "create", "--team", "t", "--json"))
        # Another process made the key: this server sees it within its key cache's TTL.
        wait_for(lambda: chat(server, None).status_code == 401, "open mode to end")
        assert "mode changed from open to api-key" in server.output()
        assert httpx.get(server.base_url + "/health").json()["auth"] == "api-key"
        assert chat(server, created["key"]).status_code == 200
        keys_cli(tmp_path, ledger, "revoke", created["id"])
        wait_for(lambda: chat(server, created["key"]).status_code == 401, "the revocation")
        time.sleep(6)  # past every cache's TTL: what holds now holds for good
        for key in (created["key"], "anything", None):
            assert chat(server, key).status_code == 401
        assert httpx.get(server.v1 + "/models").status_code == 401
    finally:
        stop_server(server)
    # A server started after the revocation, with no active key at all, is closed as well.
    again = start_server(tmp_path, config(upstream, f"{{ledger: '{ledger}'}}"))
    try:
        wait_for(lambda: "auth: api-key" in again.output(), "the banner")  # as above
        assert chat(again, None).status_code == 401
        assert chat(again, created["key"]).status_code == 401
    finally:
        stop_server(again)


# --- 2. outages --------------------------------------------------------------------------------


class RedisProxy:
    """A TCP proxy to the real Redis that a test can make hang (accept, never answer)."""

    def __init__(self) -> None:
        self.hang = False
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._open: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self._open.append(client)
            if self.hang:
                continue  # held open, never answered
            upstream = socket.create_connection(("127.0.0.1", 6379))
            self._open.append(upstream)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                if self.hang:
                    return  # swallow: the client waits for an answer that never comes
                dst.sendall(data)
        except OSError:
            pass

    def cut(self) -> None:
        """Hang from now on: open connections go silent, new ones are never answered."""
        self.hang = True

    def restore(self) -> None:
        self.hang = False
        for sock in self._open:
            sock.close()  # the client reconnects through a fresh, forwarding connection
        self._open.clear()

    def close(self) -> None:
        self._listener.close()
        for sock in self._open:
            sock.close()


def start_unready(tmp: Path, text: str, env: dict[str, str]) -> Server:
    """A server that may never be ready (its Redis is down): wait for /health only."""
    port = free_port()
    log = tmp / "server.log"
    process = subprocess.Popen(
        serve_args(tmp, text, "--port", str(port)),
        cwd=tmp,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        env={**os.environ, "COLUMNS": "200", "XDG_DATA_HOME": str(tmp / "data"), **env},
    )
    server = Server(process, f"http://127.0.0.1:{port}", log)
    try:
        wait_for(lambda: _health(server), "the server to answer /health", timeout=120)
    except AssertionError:
        stop_server(server)
        raise
    return server


def _health(server: Server) -> bool:
    if server.process.poll() is not None:
        raise AssertionError(f"cloudlet serve exited:\n{server.output()}")
    try:
        return httpx.get(server.base_url + "/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_redis_hanging_or_gone_is_503_with_retry_after_and_not_ready(
    tmp_path: Path, upstream: FakeUpstream
) -> None:
    proxy = RedisProxy()
    prefix_db = f"redis://:hunter2-{secrets.token_hex(4)}@127.0.0.1:{free_port()}/0"
    storage = f"{{ledger: 'sqlite:///{tmp_path}/ledger.db', counters: '${{COUNTERS_URL}}'}}"
    text = config(upstream, storage)
    server = start_unready(
        tmp_path,
        text,
        {"CLOUDLET_ADMIN_KEY": ADMIN, "COUNTERS_URL": f"redis://127.0.0.1:{proxy.port}/0"},
    )
    try:
        limited = admin(server, "POST", "/admin/keys", json={"team": "t", "rpm": 1000}).json()
        assert chat(server, limited["key"]).status_code == 200
        assert httpx.get(server.base_url + "/ready").status_code == 200
        proxy.cut()
        refused = chat(server, limited["key"])
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"]["code"] == "storage_unavailable"
        assert int(refused.headers["retry-after"]) >= 1
        wait_for(
            lambda: httpx.get(server.base_url + "/ready", timeout=10).status_code == 503,
            "/ready to say 503",
        )
        assert httpx.get(server.base_url + "/ready").json()["storage"] == "unavailable"
        assert httpx.get(server.base_url + "/health").status_code == 200  # alive, not ready
        proxy.restore()
        wait_for(lambda: chat(server, limited["key"]).status_code == 200, "Redis to come back")
        wait_for(
            lambda: httpx.get(server.base_url + "/ready").status_code == 200, "/ready to recover"
        )
        # The refusal is a row of its own: cost 0, the reason as its error.
        rows: list[dict[str, str]] = []

        def refused_row() -> bool:
            text = admin(server, "GET", "/admin/usage", params={"format": "csv"}).text
            rows[:] = [r for r in csv.DictReader(io.StringIO(text)) if r["status"] == "refused"]
            return bool(rows)

        wait_for(refused_row, "the refused row")
        assert rows[0]["error"] == "storage_unavailable"
        assert "Traceback" not in server.output()
    finally:
        stop_server(server)
        proxy.close()
    # A Redis that is not there at all, with a password in its URL: 503, and the password is
    # never written to the log (which shows the counters' URL at start).
    server = start_unready(
        tmp_path,
        config(upstream, storage),
        {"CLOUDLET_ADMIN_KEY": ADMIN, "COUNTERS_URL": prefix_db},
    )
    try:
        limited = admin(server, "POST", "/admin/keys", json={"team": "t2", "rpm": 1000}).json()
        refused = chat(server, limited["key"])
        assert refused.status_code == 503
        assert int(refused.headers["retry-after"]) >= 1
        assert httpx.get(server.base_url + "/ready").status_code == 503
        unlimited = admin(server, "POST", "/admin/keys", json={"team": "t3"}).json()
        assert chat(server, unlimited["key"]).status_code == 200  # needs no counters
        output = server.output()
        assert "counters: redis://:***@127.0.0.1" in output
        assert "hunter2" not in output
    finally:
        stop_server(server)


def test_database_down_at_start_is_one_line_and_exit_4(
    tmp_path: Path, upstream: FakeUpstream
) -> None:
    down = f"postgresql://root:hunter2-pg@127.0.0.1:{free_port()}/test"
    code, output = run_serve(tmp_path, config(upstream, f"{{ledger: '{down}'}}"))
    assert code == 4, output
    (line,) = error_lines(output)
    assert "cannot open the ledger at postgresql://root:***@127.0.0.1" in line
    assert "hunter2-pg" not in output
    assert "Traceback" not in output


def test_exit_codes_are_documented_and_a_taken_port_is_not_the_policy_code(
    tmp_path: Path, upstream: FakeUpstream
) -> None:
    shown = subprocess.run(
        [sys.executable, "-m", "cloudlet", "serve", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200"},
        check=True,
    ).stdout
    for code in (
        "1 other failures",
        "3 the openness policy",
        "4 the ledger",
        "5 reachable",
        "6 the port",
    ):
        assert code in shown
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        code, output = run_serve(tmp_path, config(upstream, "{ledger: 'off'}"), port=port)
    assert code == 6, output  # uvicorn's own 3 would read as "the policy refused a model"


def test_storage_urls_take_env_references(tmp_path: Path, upstream: FakeUpstream) -> None:
    storage = "{ledger: '${LEDGER_URL}', counters: 'redis://127.0.0.1:${REDIS_PORT}/0'}"
    code, output = run_serve(tmp_path, config(upstream, storage), env={"REDIS_PORT": "6379"})
    assert code == 2, output
    assert error_lines(output) == [
        "error: storage.ledger: refers to ${LEDGER_URL}, which is not set"
    ]
    schema = "fc_" + secrets.token_hex(4)
    server = start_server(
        tmp_path,
        config(upstream, storage),
        {"LEDGER_URL": f"{PG}?schema={schema}", "REDIS_PORT": "6379", "CLOUDLET_ADMIN_KEY": ADMIN},
    )
    try:
        key = admin(server, "POST", "/admin/keys", json={"team": "env", "rpm": 100}).json()["key"]
        assert chat(server, key).status_code == 200
        assert f"schema={schema}" in server.output()  # the ledger named in the log is this one
    finally:
        stop_server(server)
    asyncio.run(_drop_schema(schema))


async def _drop_schema(schema: str) -> None:
    import asyncpg

    conn = await asyncpg.connect("postgresql://root@127.0.0.1:5432/test")
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    finally:
        await conn.close()


# --- 3. every request of a known tenant has its row ---------------------------------------------


def test_refused_requests_of_a_known_key_get_rows(tmp_path: Path, upstream: FakeUpstream) -> None:
    server = start_server(
        tmp_path,
        config(upstream, f"{{ledger: 'sqlite:///{tmp_path}/ledger.db'}}"),
        {"CLOUDLET_ADMIN_KEY": ADMIN},
    )
    try:
        scoped = admin(server, "POST", "/admin/keys", json={"team": "scoped", "models": ["x"]})
        slow = admin(server, "POST", "/admin/keys", json={"team": "slow", "rpm": 1}).json()
        assert chat(server, scoped.json()["key"]).status_code == 403
        assert [chat(server, slow["key"]).status_code for _ in range(2)] == [200, 429]
        assert chat(server, "sk-cl-" + "y" * 43).status_code == 401
        rows: list[dict[str, str]] = []

        def three_rows() -> bool:
            text = admin(server, "GET", "/admin/usage", params={"format": "csv"}).text
            rows[:] = list(csv.DictReader(io.StringIO(text)))
            return len(rows) >= 3

        wait_for(three_rows, "the rows")
        seen = sorted((r["team"], r["status"], r["error"], r["cost"]) for r in rows)
        assert [s[:3] for s in seen] == [
            ("scoped", "refused", "model_not_permitted_for_key"),
            ("slow", "ok", ""),
            ("slow", "refused", "rate_limit_exceeded"),
        ]  # the 401 has no row ...
        assert all(float(cost) == 0 for team, status, _, cost in seen if status == "refused")
        metrics = httpx.get(server.base_url + "/metrics").text
        assert (
            'cloudlet_auth_failures_total{reason="invalid_key"} 1.0' in metrics
        )  # ... but a count
    finally:
        stop_server(server)
