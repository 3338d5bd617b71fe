"""``cloudlet keys``: create, list and revoke API keys in the ledger the server uses.

    cloudlet keys create --team T [--models a,b] [--rpm N] [--tpm N]
                         [--budget AMOUNT [--currency USD] --period day|month] [--json]
    cloudlet keys list [--all] [--json]
    cloudlet keys revoke ID

The ledger is the spec's ``storage.ledger`` (``--config``, else ``CLOUDLET_CONFIG`` or
./cloudlet.yaml), or ``--ledger URL``, else SQLite in the user data directory: the same one
``cloudlet serve`` opens. A new key is printed once; only its hash is stored. A running server
sees new and revoked keys within seconds (its key cache).

Exit codes: 0 ok, 1 no such key or the ledger cannot be opened, 2 bad arguments or spec.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from pydantic import ValidationError
from rich.panel import Panel
from rich.table import Table
from sqlalchemy.exc import SQLAlchemyError

from cloudlet.cli.common import ConfigOption, console, fail, spec_or_exit
from cloudlet.config.storage import StorageSpec
from cloudlet.counters.base import Period
from cloudlet.errors import SpecError, StorageUnavailable
from cloudlet.ledger.keys import KeyRecord
from cloudlet.ledger.store import Ledger
from cloudlet.pricing import Money, parse_amount

T = TypeVar("T")

LedgerOption = Annotated[
    str | None,
    typer.Option(
        "--ledger",
        help="Ledger URL (sqlite:///path, postgresql://...); default: the spec's "
        "storage.ledger, else SQLite in the user data directory.",
        envvar="CLOUDLET_LEDGER",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


class PeriodChoice(StrEnum):
    day = "day"
    month = "month"


app = typer.Typer(
    name="keys",
    help="API keys: create, list, revoke.",
    no_args_is_help=True,
    rich_markup_mode="rich",
)


def register(parent: typer.Typer) -> None:
    """Add ``keys`` to the top-level ``cloudlet`` app."""
    parent.add_typer(app, name="keys")


def storage_for(config: Path | None, ledger: str | None) -> StorageSpec:
    """``--ledger`` if given, else the spec's ``storage`` block, else the defaults."""
    try:
        if ledger and ledger != "off":
            return StorageSpec(ledger=ledger)
    except ValidationError as exc:
        fail(f"--ledger: {exc.errors()[0]['msg']}", 2)
    storage = spec_or_exit(config).storage
    if storage.ledger == "off":
        fail("the spec turns the ledger off (storage.ledger: off): no keys, no usage", 2)
    return storage


def with_ledger(storage: StorageSpec, work: Callable[[Ledger], Awaitable[T]]) -> T:
    """Open the ledger (migrating it), run ``work``, close it; errors exit 1 with a message."""

    async def run() -> T:
        ledger = await Ledger.open(storage, start_writer=False)
        try:
            return await work(ledger)
        finally:
            await ledger.close()

    try:
        return asyncio.run(run())
    except SpecError as exc:  # an unset ${VAR} in the ledger URL
        field, why = exc.problems[0]
        fail(f"{field}: {why}", 2)
    except StorageUnavailable as exc:  # names the database, never its password
        fail(exc.message)
    except (OSError, ValueError) as exc:
        fail(f"cannot use the ledger: {exc}")
    except SQLAlchemyError as exc:  # the driver's message names the problem, not the password
        fail(f"cannot use the ledger: {type(exc).__name__}: {str(exc).splitlines()[0]}")


@app.command()
def create(
    team: Annotated[str, typer.Option("--team", help="Team (tenant) the key belongs to.")],
    models: Annotated[
        str | None, typer.Option(help="Comma-separated models the key may use [default: all].")
    ] = None,
    rpm: Annotated[int | None, typer.Option(min=1, help="Requests per minute.")] = None,
    tpm: Annotated[int | None, typer.Option(min=1, help="Tokens per minute.")] = None,
    budget: Annotated[str | None, typer.Option(help="Spending cap per period, e.g. 20.00.")] = None,
    currency: Annotated[
        str | None,
        typer.Option(help="ISO 4217 code of the budget: the deployment's (currency:)."),
    ] = None,
    period: Annotated[PeriodChoice, typer.Option(help="Budget period (UTC).")] = PeriodChoice.month,
    json_: JsonOption = False,
    config: ConfigOption = None,
    ledger: LedgerOption = None,
) -> None:
    """Create an API key for a team. The key is printed once: store it now."""
    deployment = spec_or_exit(config).currency
    if currency is not None and currency.upper() != deployment:
        fail(f"--currency: this deployment bills in {deployment} (the spec's currency:)", 2)
    money = _budget(budget, deployment)
    if (rpm is not None and rpm > _INT32) or (tpm is not None and tpm > _INT32):
        fail(f"--rpm/--tpm: at most {_INT32}", 2)
    if not team or any(ord(c) < 32 or ord(c) == 127 for c in team) or len(team) > 128:
        fail("--team: 1 to 128 printable characters", 2)
    scope = [m.strip() for m in models.split(",") if m.strip()] if models is not None else None
    if scope is not None and not scope:
        fail("--models: give at least one model name", 2)
    storage = storage_for(config, ledger)
    created = with_ledger(
        storage,
        lambda lg: lg.keys.create(
            team, models=scope, rpm=rpm, tpm=tpm, budget=money, period=_period(period)
        ),
    )
    if json_:
        typer.echo(json.dumps({"key": created.key, **created.record.as_json()}, indent=2))
        return
    out = console()
    out.print(
        Panel(
            f"[bold]{created.key}[/]\n\nCopy it now: cloudlet stores only its hash and cannot "
            "show it again.",
            title=f"key {created.record.id} for team {team}",
            expand=False,
        )
    )
    out.print(_table([created.record]))


@app.command("list")
def list_keys(
    all_: Annotated[bool, typer.Option("--all", help="Include revoked keys.")] = False,
    json_: JsonOption = False,
    config: ConfigOption = None,
    ledger: LedgerOption = None,
) -> None:
    """List API keys (their prefixes, never the keys)."""
    storage = storage_for(config, ledger)
    records = with_ledger(storage, lambda lg: lg.keys.list(include_revoked=all_))
    if json_:
        typer.echo(json.dumps([r.as_json() for r in records], indent=2))
        return
    if not records:
        console().print(
            "no keys: requests from loopback need none; create one with "
            "[bold]cloudlet keys create --team NAME[/]"
        )
        return
    console().print(_table(records, revoked=all_))


@app.command()
def revoke(
    key_id: Annotated[str, typer.Argument(metavar="ID", help="The key's id (see keys list).")],
    config: ConfigOption = None,
    ledger: LedgerOption = None,
) -> None:
    """Revoke an API key; requests with it get 401 within seconds."""
    storage = storage_for(config, ledger)
    if not with_ledger(storage, lambda lg: lg.keys.revoke(key_id)):
        fail(f"no active key {key_id!r} (see cloudlet keys list)")
    console().print(f"revoked {key_id}")


_INT32 = 2**31 - 1


def _budget(amount: str | None, currency: str) -> Money | None:
    if amount is None:
        return None
    try:
        return Money(parse_amount(amount), currency)
    except ValueError as exc:
        fail(f"--budget: {exc}", 2)


def _period(choice: PeriodChoice) -> Period:
    return "day" if choice is PeriodChoice.day else "month"


def _table(records: list[KeyRecord], *, revoked: bool = False) -> Table:
    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    columns = ["id", "prefix", "team", "models", "rpm", "tpm", "budget", "created"]
    for column in columns + (["revoked"] if revoked else []):
        # The id is what `keys revoke` takes: never cut or wrapped, however narrow the terminal.
        wide = max((len(r.id) for r in records), default=2) if column == "id" else None
        table.add_column(column, no_wrap=column == "id", min_width=wide)
    for r in records:
        budget = r.limits.budget
        row = [
            r.id,
            r.prefix + "…",
            r.team,
            ", ".join(r.models) if r.models is not None else "all",
            str(r.limits.rpm or "-"),
            str(r.limits.tpm or "-"),
            f"{budget} / {r.limits.period}" if budget is not None else "-",
            r.created_at.strftime("%Y-%m-%d %H:%M"),
        ]
        if revoked:
            row.append(r.revoked_at.strftime("%Y-%m-%d %H:%M") if r.revoked_at else "")
        table.add_row(*row)
    return table
