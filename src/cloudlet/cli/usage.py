"""``cloudlet usage``: what was used and what it cost, from the ledger the server writes.

    cloudlet usage [--since 7d] [--by team|model|target|key] [--json] [--csv FILE]

The table (or, with ``--json``, a list of objects: the group field, requests, prompt_tokens,
completion_tokens, cost, local_cost, cloud_cost, cloud_equivalent, saved, currency; money as
decimal strings) groups requests by team, model, target or key, per currency. ``local`` is what
ran on our own hardware cost (priced from its measured throughput), ``cloud`` what the
``cloud: true`` targets charged, ``cloud equivalent`` what every one of these tokens would have
cost at the reference cloud price, and ``saved`` the local requests' cloud-equivalent minus
their cost. ``--csv FILE`` also writes every request's row
(the ledger itself, for finance), ``-`` for standard output. The ledger is found as for
``cloudlet keys`` (``--config``, ``--ledger``).
"""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from cloudlet.cli.common import ConfigOption, console, fail
from cloudlet.cli.keys import JsonOption, LedgerOption, storage_for, with_ledger
from cloudlet.config.storage import StorageSpec
from cloudlet.ledger.reports import GroupBy, UsageGroup, parse_since
from cloudlet.ledger.store import Ledger


class By(StrEnum):
    team = "team"
    model = "model"
    target = "target"
    key = "key"


def register(parent: typer.Typer) -> None:
    """Add ``usage`` to the top-level ``cloudlet`` app."""
    parent.command("usage")(usage)


def usage(
    since: Annotated[
        str | None,
        typer.Option(help="Only requests since: 30m, 24h, 7d, 2w or an ISO date [default: all]."),
    ] = None,
    by: Annotated[By, typer.Option(help="Group by team, model, target or key.")] = By.team,
    json_: JsonOption = False,
    csv: Annotated[
        Path | None,
        typer.Option("--csv", help="Also write every request's row as CSV to FILE (- for stdout)."),
    ] = None,
    request_id: Annotated[
        str | None,
        typer.Option(
            "--request-id",
            help="Show the row of one request: the x-request-id of its response.",
        ),
    ] = None,
    config: ConfigOption = None,
    ledger: LedgerOption = None,
) -> None:
    """Usage and cost per team, model, target or key, local requests included."""
    if request_id is not None:
        _show_request(storage_for(config, ledger), request_id, json_)
        return
    try:
        start = parse_since(since) if since is not None else None
    except ValueError as exc:
        fail(f"--since: {exc}", 2)
    storage = storage_for(config, ledger)
    group_by: GroupBy = by.value

    async def work(lg: Ledger) -> list[UsageGroup]:
        if csv is not None:
            await _write_csv(lg, csv, start)
        return await lg.report(by=group_by, since=start)

    groups = with_ledger(storage, work)
    if json_:
        typer.echo(json.dumps([g.as_json() for g in groups], indent=2))
    elif csv is None or str(csv) != "-":
        console().print(_table(groups, by.value, start))


async def _write_csv(lg: Ledger, path: Path, since: datetime | None) -> None:
    if str(path) == "-":
        try:
            await lg.write_csv(sys.stdout, since=since)
            sys.stdout.flush()
        except BrokenPipeError:  # `usage --csv - | head`: the reader had enough, not an error
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # quiet at exit
            raise typer.Exit(0) from None
        return
    with path.open("w", newline="", encoding="utf-8") as out:
        count = await lg.write_csv(out, since=since)
    console(stderr=True).print(f"wrote {count} rows to {path}")


def _show_request(storage: StorageSpec, request_id: str, as_json: bool) -> None:
    async def work(lg: Ledger) -> list[dict[str, Any]]:
        return await lg.request_rows(request_id)

    rows = with_ledger(storage, work)
    if not rows:
        fail(f"no ledger row for request {request_id!r} (rows are written within a second)", 1)
    if as_json:
        typer.echo(json.dumps(rows, indent=2, default=str))
        return
    for row in rows:
        table = Table(title=f"request {row['request_id']}", show_header=False)
        table.add_column("field", style="bold")
        table.add_column("value")
        for name, value in row.items():
            table.add_row(name, "-" if value is None else str(value))
        console().print(table)


def _money(amount: Decimal) -> str:
    return f"{amount.quantize(Decimal('0.000001')):f}"


def _table(groups: list[UsageGroup], by: str, since: datetime | None) -> Table:
    title = f"usage since {since:%Y-%m-%d %H:%M} UTC" if since else "usage, all time"
    table = Table(title=title, show_header=True, header_style="bold")
    table.add_column(by)
    for name in (
        "requests",
        "prompt tokens",
        "completion tokens",
        "local",
        "cloud",
        "cloud equivalent",
        "saved",
    ):
        table.add_column(name, justify="right")
    table.add_column("currency")
    for g in groups:
        table.add_row(g.group if g.group is not None else "-", *_cells(g), g.cost.currency)
    if len(groups) > 1:
        table.add_section()
        for currency in sorted({g.cost.currency for g in groups}):
            same = [g for g in groups if g.cost.currency == currency]
            total = UsageGroup(
                by=same[0].by,
                group=None,
                requests=sum(g.requests for g in same),
                prompt_tokens=sum(g.prompt_tokens for g in same),
                completion_tokens=sum(g.completion_tokens for g in same),
                cost=sum((g.cost for g in same[1:]), same[0].cost),
                cloud_equivalent=sum(
                    (g.cloud_equivalent for g in same[1:]), same[0].cloud_equivalent
                ),
                local_cost=sum((g.local for g in same[1:]), same[0].local),
                cloud_cost=sum((g.cloud for g in same[1:]), same[0].cloud),
                saved=sum((g.savings for g in same[1:]), same[0].savings),
            )
            table.add_row("total", *_cells(total), currency, style="bold")
    return table


def _cells(g: UsageGroup) -> list[str]:
    return [
        str(g.requests),
        str(g.prompt_tokens),
        str(g.completion_tokens),
        _money(g.local.amount),
        _money(g.cloud.amount),
        _money(g.cloud_equivalent.amount),
        _money(g.savings.amount),
    ]
