"""``cloudlet bench`` against the fake OpenAI-compatible upstream, on a real loopback socket.

What reached the upstream (how many requests, which body, which key) and the counts the bench
reports; never how fast anything was.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from cloudlet.cli.main import app
from tests.conftest import free_port
from tests.fakes_upstream import FakeUpstream, NoUsage, Status

WORDS = ("one", " two", " three", " four")
runner = CliRunner()


@pytest.fixture
def up() -> Iterator[FakeUpstream]:
    upstream = FakeUpstream(words=WORDS).start()
    yield upstream
    upstream.stop()


def bench(*args: str, **env: str | None) -> Result:
    env = {"COLUMNS": "200", "CLOUDLET_URL": None, "CLOUDLET_API_KEY": None, **env}
    env.setdefault("OPENAI_API_KEY", None)
    return runner.invoke(app, ["bench", *args], env=env)


def bench_json(*args: str, **env: str | None) -> dict[str, Any]:
    result = bench(*args, "--json", **env)
    assert result.exit_code == 0, result.output
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def test_streams_every_request_and_reports_the_counts(up: FakeUpstream) -> None:
    report = bench_json(
        "--url", up.url, "--requests", "12", "--concurrency", "3", "--max-tokens", "3",
        OPENAI_API_KEY="sk-bench",
    )  # fmt: skip
    calls = up.calls()
    assert len(calls) == 12
    assert len(up.calls("/models")) == 1  # asked once, for the default model
    for call in calls:
        assert call.body["model"] == "upstream-model"  # the first id of GET /models
        assert call.body["stream"] is True
        assert call.body["stream_options"] == {"include_usage": True}
        assert call.body["max_tokens"] == 3
        assert call.headers["authorization"] == "Bearer sk-bench"
    assert (report["requests"], report["ok"], report["failed"]) == (12, 12, 0)
    assert report["failed_by_status"] == {}
    assert report["output_tokens"] == 12 * 3  # the usage the upstream sent, summed
    assert report["requests_without_usage"] == 0
    assert (report["model"], report["stream"], report["concurrency"]) == ("upstream-model", True, 3)
    ttft, latency = report["ttft_ms"], report["latency_ms"]
    assert None not in (*ttft.values(), *latency.values(), report["itl_ms"]["p50"])
    assert ttft["p50"] <= ttft["p90"] <= ttft["p99"]
    assert latency["p50"] <= latency["p90"] <= latency["p99"]
    assert latency["p50"] >= ttft["p50"]  # each request ends after its first token


def test_injected_failures_are_counted_by_status(up: FakeUpstream) -> None:
    up.fail_next(Status(500), Status(500), Status(429))
    report = bench_json("--url", up.url, "--requests", "10", "--concurrency", "4")
    assert len(up.calls()) == 10  # failures are not retried
    assert (report["requests"], report["ok"], report["failed"]) == (10, 7, 3)
    assert report["failed_by_status"] == {"500": 2, "429": 1}
    assert report["errors"] == {"500": "injected 500", "429": "injected 429"}
    assert report["output_tokens"] == 7 * len(WORDS)


def test_not_streaming(up: FakeUpstream) -> None:
    report = bench_json("--url", up.url, "--requests", "5", "--no-stream", "--model", "mine")
    assert up.calls("/models") == []  # --model given: no need to ask
    assert [c.body["model"] for c in up.calls()] == ["mine"] * 5
    assert all(c.body["stream"] is False and "stream_options" not in c.body for c in up.calls())
    assert (report["ok"], report["output_tokens"]) == (5, 5 * len(WORDS))
    assert report["ttft_ms"]["p50"] is None and report["itl_ms"]["p50"] is None
    assert report["latency_ms"]["p50"] is not None


def test_answers_without_usage_are_reported_not_counted() -> None:
    up = FakeUpstream(words=WORDS, default=NoUsage()).start()
    try:
        report = bench_json("--url", up.url, "--requests", "4")
    finally:
        up.stop()
    assert (report["ok"], report["output_tokens"], report["requests_without_usage"]) == (4, 0, 4)


def test_prompts_file_is_used_in_turn(up: FakeUpstream, tmp_path: Path) -> None:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("first\n\nsecond\n")
    bench_json(
        "--url", up.url, "--requests", "5", "--concurrency", "1", "--prompts-file", str(prompts)
    )
    sent = [c.body["messages"] for c in up.calls()]
    assert [m[0]["content"] for m in sent] == ["first", "second", "first", "second", "first"]
    assert all(len(m) == 1 and m[0]["role"] == "user" for m in sent)


def test_the_table(up: FakeUpstream) -> None:
    up.fail_next(Status(500))
    result = bench("--url", up.url, "--requests", "6", "--prompt", "hi")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "cloudlet bench" in out
    assert f"{up.url}, model upstream-model" in out
    assert "5 ok, 1 failed (500: 1)" in out
    for row in ("requests/s", "output tokens/s", "TTFT p50 / p90 / p99", "inter-token p50"):
        assert row in out
    assert "injected 500" in out
    assert {c.body["messages"][0]["content"] for c in up.calls()} == {"hi"}


def test_a_refused_key_stops_the_run_with_one_line() -> None:
    up = FakeUpstream(default=Status(401)).start()
    try:
        result = bench("--url", up.url, "-m", "m", "--requests", "50", "--concurrency", "2")
        reached = len(up.calls())
    finally:
        up.stop()
    assert result.exit_code == 1
    assert 1 <= reached <= 2  # each worker stops after its 401, not 50 requests
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: 401 from ")
    assert "injected 401" in lines[0] and "--api-key" in lines[0]


def test_a_run_in_which_every_request_failed_exits_1() -> None:
    up = FakeUpstream(default=Status(500)).start()
    try:
        result = bench("--url", up.url, "--requests", "4", "--json")
        reached = len(up.calls())
    finally:
        up.stop()
    assert result.exit_code == 1
    assert reached == 4
    assert "all 4 requests to" in result.stderr
    assert "500: injected 500 (4 requests)" in result.stderr
    assert result.stdout == ""


def test_a_server_without_models_needs_model() -> None:
    up = FakeUpstream(healthy=False).start()
    try:
        result = bench("--url", up.url)
    finally:
        up.stop()
    assert result.exit_code == 1
    assert "503 from" in result.stderr and "pass --model" in result.stderr
    assert up.calls() == []


def test_prompt_and_prompts_file_exclude_each_other(tmp_path: Path) -> None:
    (tmp_path / "p.txt").write_text("x\n")
    result = bench("--prompt", "a", "--prompts-file", str(tmp_path / "p.txt"))
    assert result.exit_code == 2
    assert "not both" in result.stderr


@pytest.mark.parametrize("extra", [[], ["--model", "m", "--json"]])
def test_a_dead_url_exits_1_with_a_clear_message(extra: list[str]) -> None:
    dead = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    result = subprocess.run(
        [sys.executable, "-m", "cloudlet", "bench", "--url", dead, "--requests", "3", *extra],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: ")
    assert dead in lines[0]
    assert "cannot reach" in lines[0] or "connection" in lines[0]
