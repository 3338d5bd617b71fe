"""``cloudlet keys`` and ``cloudlet usage`` against real ledgers (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import csv
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from cloudlet.cli import keys, usage
from cloudlet.ledger.keys import Tenant
from cloudlet.ledger.store import Ledger
from tests.unit.ledger.rows import row
from tests.unit.ledger.stores import BACKENDS, drop_ledger, new_ledger_url

runner = CliRunner()


def _app() -> typer.Typer:
    app = typer.Typer()
    app.callback()(lambda: None)
    keys.register(app)
    usage.register(app)
    return app


@pytest.fixture(params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    value = new_ledger_url(request.param, tmp_path)
    yield value
    asyncio.run(drop_ledger(value))


def _invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(_app(), list(args), env={"COLUMNS": "200"})
    return result.exit_code, result.output


async def _authenticate(url: str, key: str) -> Tenant | None:
    ledger = await Ledger.open(url, start_writer=False)
    try:
        return await ledger.keys.authenticate(key)
    finally:
        await ledger.close()


def test_create_list_revoke(url: str) -> None:
    code, out = _invoke(
        "keys", "create", "--team", "research", "--models", "smollm2, mistral",
        "--rpm", "60", "--tpm", "5000", "--budget", "10.50", "--period", "day",
        "--json", "--ledger", url,
    )  # fmt: skip
    assert code == 0, out
    created = json.loads(out)
    assert created["key"].startswith("sk-cl-") and created["team"] == "research"
    assert (created["budget"], created["currency"], created["period"]) == ("10.5", "USD", "day")
    assert created["models"] == ["mistral", "smollm2"]
    tenant = asyncio.run(_authenticate(url, created["key"]))
    assert tenant is not None and tenant.key_id == created["id"] and tenant.limits.rpm == 60

    code, out = _invoke("keys", "list", "--ledger", url)
    assert code == 0 and created["id"] in out and created["prefix"] in out
    assert created["key"] not in out
    code, out = _invoke("keys", "list", "--json", "--ledger", url)
    assert [k["id"] for k in json.loads(out)] == [created["id"]]
    assert "key" not in json.loads(out)[0]

    code, out = _invoke("keys", "revoke", created["id"], "--ledger", url)
    assert code == 0 and "revoked" in out
    assert asyncio.run(_authenticate(url, created["key"])) is None
    code, out = _invoke("keys", "revoke", created["id"], "--ledger", url)
    assert code == 1 and "no active key" in out
    code, out = _invoke("keys", "list", "--all", "--json", "--ledger", url)
    assert json.loads(out)[0]["revoked_at"] is not None


def test_create_prints_the_key_once_in_a_table(url: str) -> None:
    code, out = _invoke("keys", "create", "--team", "ops", "--ledger", url)
    assert code == 0 and "sk-cl-" in out and "cannot show it again" in out
    code, out = _invoke("keys", "create", "--team", "ops", "--budget", "lots", "--ledger", url)
    assert code == 2 and "--budget" in out


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["--budget", "NaN"], "--budget"),
        (["--budget", "-5"], "--budget"),
        (["--budget", "1e30"], "--budget"),
        (["--budget", "5", "--currency", "EUR"], "--currency"),
        (["--tpm", str(2**31)], "--rpm/--tpm"),
        (["--team", "a\x00b"], "--team"),
    ],
)
def test_bad_money_and_limits_exit_2_naming_the_option(
    url: str, args: list[str], option: str
) -> None:
    if args[0] == "--team":
        args = ["--team", b"a\x00b".decode("unicode_escape")]
    code, out = _invoke("keys", "create", "--team", "ops", *args, "--ledger", url)
    assert code == 2 and option in out, out
    code, out = _invoke("keys", "list", "--json", "--ledger", url)
    assert json.loads(out) == []


async def _write_rows(url: str) -> None:
    ledger = await Ledger.open(url)
    try:
        ledger.writer.record(row("1", cost="0.10", team="a", model="m1"))
        ledger.writer.record(row("2", cost="0.25", team="b", model="m1"))
        ledger.writer.record(row("3", cost="0.05", team="b", model="m2"))
        ledger.writer.record(row("4", cost="0.50", team="b", model="m2", cloud=True))
    finally:
        await ledger.close()


def test_usage_reports_and_exports(url: str, tmp_path: Path) -> None:
    asyncio.run(_write_rows(url))
    code, out = _invoke("usage", "--by", "model", "--json", "--ledger", url)
    assert code == 0, out
    assert json.loads(out) == [
        {"model": "m2", "requests": 2, "prompt_tokens": 20, "completion_tokens": 10,
         "cost": "0.55", "local_cost": "0.05", "cloud_cost": "0.5", "cloud_equivalent": "0.65",
         "saved": "0.1", "currency": "USD"},
        {"model": "m1", "requests": 2, "prompt_tokens": 20, "completion_tokens": 10,
         "cost": "0.35", "local_cost": "0.35", "cloud_cost": "0", "cloud_equivalent": "1.05",
         "saved": "0.7", "currency": "USD"},
    ]  # fmt: skip
    code, out = _invoke("usage", "--ledger", url)
    assert code == 0 and "total" in out
    # team b: local 0.25 + 0.05, cloud 0.50, cloud-equivalent 0.90 + 0.50, saved 0.60
    assert "0.300000" in out and "0.500000" in out and "1.400000" in out and "0.600000" in out
    # all: local 0.40, cloud 0.50, cloud-equivalent 1.70, saved 0.80
    assert "0.400000" in out and "1.700000" in out and "0.800000" in out
    target = tmp_path / "rows.csv"
    code, out = _invoke("usage", "--csv", str(target), "--since", "3650d", "--ledger", url)
    assert code == 0
    with target.open() as f:
        exported = list(csv.DictReader(f))
    assert [r["request_id"] for r in exported] == ["1", "2", "3", "4"]
    assert [r["cloud"] for r in exported] == ["False", "False", "False", "True"]
    code, out = _invoke("usage", "--since", "last week", "--ledger", url)
    assert code == 2 and "--since" in out


def test_usage_finds_one_request_by_its_id_or_the_clients(url: str) -> None:
    async def write() -> None:
        ledger = await Ledger.open(url)
        try:
            ledger.writer.record(replace(row("req-a", cost="0.10"), client_request_id="mine"))
            ledger.writer.record(replace(row("req-b", cost="0.20"), client_request_id="mine"))
            ledger.writer.record(row("req-c", cost="0.30"))
        finally:
            await ledger.close()

    asyncio.run(write())
    code, out = _invoke("usage", "--request-id", "req-c", "--json", "--ledger", url)
    assert code == 0, out
    [found] = json.loads(out)
    assert (found["request_id"], found["cost"], found["status"]) == ("req-c", "0.3", "ok")
    code, out = _invoke("usage", "--request-id", "mine", "--json", "--ledger", url)
    assert [r["request_id"] for r in json.loads(out)] == ["req-a", "req-b"]
    code, out = _invoke("usage", "--request-id", "req-a", "--ledger", url)
    assert code == 0 and "req-a" in out and "client_request_id" in out and "mine" in out
    code, out = _invoke("usage", "--request-id", "req-nope", "--ledger", url)
    assert code == 1 and "no ledger row" in out


def test_the_default_ledger_is_in_the_user_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.delenv("CLOUDLET_CONFIG", raising=False)
    monkeypatch.delenv("CLOUDLET_LEDGER", raising=False)
    code, out = _invoke("keys", "create", "--team", "t", "--json")
    assert code == 0, out
    assert (tmp_path / "data" / "cloudlet" / "ledger.db").is_file()
    code, out = _invoke("keys", "list", "--json")
    assert len(json.loads(out)) == 1


def test_a_bad_ledger_url_exits_2() -> None:
    code, out = _invoke("keys", "list", "--ledger", "mysql://u:pw@h/db")
    assert code == 2 and "pw" not in out


def test_a_narrow_terminal_shows_whole_ids_that_revoke_takes(url: str) -> None:
    code, out = _invoke(
        "keys", "create", "--team", "a-team-with-a-long-name", "--json", "--ledger", url
    )
    assert code == 0, out
    key_id = json.loads(out)["id"]
    narrow = runner.invoke(_app(), ["keys", "list", "--ledger", url], env={"COLUMNS": "40"})
    assert narrow.exit_code == 0, narrow.output
    shown = [line.split()[0] for line in narrow.output.splitlines()[1:] if line.strip()]
    assert key_id in shown, narrow.output
    assert _invoke("keys", "revoke", key_id, "--ledger", url)[0] == 0


def test_usage_csv_to_a_closed_pipe_is_quiet(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/ledger.db"

    async def many() -> None:
        ledger = await Ledger.open(url)
        try:
            for i in range(3000):  # well over a pipe's buffer
                ledger.writer.record(row(str(i), cost="0.01", team="a", model="m"))
        finally:
            await ledger.close()

    asyncio.run(many())
    command = f"{sys.executable} -m cloudlet usage --csv - --ledger {url} | head -n 2"
    result = subprocess.run(
        ["bash", "-o", "pipefail", "-c", command], capture_output=True, text=True, timeout=120
    )
    assert result.stdout.startswith("request_id,") and len(result.stdout.splitlines()) == 2
    assert result.stderr == "" and result.returncode == 0
