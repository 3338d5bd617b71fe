"""The access log sink: one line per record, logfmt or JSON, nothing a client could forge."""

from __future__ import annotations

import json
import logging
import shlex

import pytest

from cloudlet.observe.access_log import ACCESS_LOGGER, AccessLog
from tests.unit.observe.records import record, refused


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == ACCESS_LOGGER]


def test_a_text_line_per_record(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, ACCESS_LOGGER)
    sink = AccessLog()
    sink.record(record(stream=True))
    sink.record(refused())
    ok, no = lines(caplog)
    fields = dict(part.split("=", 1) for part in shlex.split(ok))
    assert fields == {
        "request_id": "req-0001",
        "op": "chat",
        "model": "chat",
        "route": "chat",
        "target": "local",
        "status": "ok",
        "http_status": "200",
        "stream": "true",
        "tokens": "9+5",
        "ttft_s": "0.0500",
        "duration_s": "0.4500",
        "cost": "0.000002",
        "currency": "USD",
        "team": "alpha",
    }
    assert no.split() == [
        "request_id=req-0001",
        "op=chat",
        "model=chat",
        "route=chat",
        "target=-",
        "status=refused",
        "error=rate_limit_exceeded",
        "http_status=429",
        "tokens=0+0",
        "duration_s=0.0010",
        "cost=0",
        "currency=USD",
        "team=alpha",
    ]


def test_json_lines(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, ACCESS_LOGGER)
    AccessLog(json_lines=True).record(record(spilled=True, target="cloud", cloud=True))
    (line,) = lines(caplog)
    assert json.loads(line) == {
        "ts": "2026-12-06T12:00:00.000+00:00",
        "request_id": "req-0001",
        "operation": "chat",
        "model": "chat",
        "route": "chat",
        "target": "cloud",
        "status": "ok",
        "error": None,
        "http_status": 200,
        "stream": False,
        "prompt_tokens": 9,
        "completion_tokens": 5,
        "ttft_s": 0.05,
        "duration_s": 0.45,
        "cost": "0.000002",
        "cloud_equivalent_cost": "0.000010",
        "currency": "USD",
        "spilled": True,
        "team": "alpha",
    }
    assert "key-1" not in line  # not even the key's id


def test_a_client_cannot_forge_a_line(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, ACCESS_LOGGER)
    evil = 'x status=ok\nrequest_id=forged "quoted"'
    AccessLog().record(refused("model_not_found", 404, model=evil, team="the a team"))
    (line,) = lines(caplog)
    assert "\n" not in line
    assert f"model={json.dumps(evil)}" in line  # quoted and escaped: one field
    fields = dict(part.split("=", 1) for part in shlex.split(line))
    assert fields["request_id"] == "req-0001" and fields["status"] == "refused"
    assert fields["team"] == "the a team"


def test_nothing_is_formatted_when_the_level_hides_it(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, ACCESS_LOGGER)
    AccessLog().record(record())
    assert lines(caplog) == []
