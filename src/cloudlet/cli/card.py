"""``cloudlet card``: show a served model's transparency card, or classify MOF records.

    cloudlet card MODEL [--format table|json|cyclonedx|mof] [--config FILE]
    cloudlet card --mof-file A.yml [--mof-file B.yml ...] [--format json|table]

For MODEL the card is built as the server builds it: from the spec (``--config``, else
``CLOUDLET_CONFIG`` or ./cloudlet.yaml, else the defaults), the model file its ``source``
resolves to, and the model's ``card:`` block. With ``--mof-file`` each record is classified by
the Model Openness Tool's rules and printed in the order given.

Exit codes: 0 ok, 1 unknown model, 2 bad usage or an invalid spec / record file.
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, cast

import typer
from rich.console import Console
from rich.table import Table

from cloudlet.cards import (
    CardSpec,
    ModelCard,
    OpennessPolicy,
    build_card,
    card_to_dict,
    check_policy,
    classify,
    load_mof_file,
    to_cyclonedx,
    to_mof_yaml,
)
from cloudlet.cli.common import ConfigOption, fail, spec_or_exit
from cloudlet.errors import CloudletError, SpecError


class Format(StrEnum):
    table = "table"
    json = "json"
    cyclonedx = "cyclonedx"
    mof = "mof"


def card(
    model: Annotated[str | None, typer.Argument(help="model name, as clients send it")] = None,
    fmt: Annotated[Format, typer.Option("--format", "-f", help="output format")] = Format.table,
    mof_file: Annotated[
        list[Path] | None,
        typer.Option("--mof-file", help="classify a Model Openness Tool record (repeatable)"),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Show a model's transparency card (MOF class, licences, sources) or classify MOF files."""
    out = Console(soft_wrap=True)
    err = Console(stderr=True)
    if mof_file and model is not None:
        fail("give either MODEL or --mof-file, not both", 2)
    if mof_file:
        _classify_files(out, mof_file, fmt)
        return
    if model is None:
        fail("give a MODEL name, or one or more --mof-file records", 2)
    model_card, policy = _model_card(err, model, config)
    if fmt is Format.json:
        typer.echo(json.dumps(card_to_dict(model_card), indent=2))
    elif fmt is Format.cyclonedx:
        typer.echo(json.dumps(to_cyclonedx(model_card), indent=2))
    elif fmt is Format.mof:
        typer.echo(to_mof_yaml(model_card), nl=False)
    else:
        _render_card(out, model_card, policy)


def register(app: typer.Typer) -> None:
    """Add ``card`` to the top-level ``cloudlet`` app."""
    app.command("card")(card)


def _classify_files(out: Console, paths: list[Path], fmt: Format) -> None:
    if fmt not in (Format.json, Format.table):
        fail("--mof-file prints json or table; use MODEL for cyclonedx or mof", 2)
    results: list[dict[str, Any]] = []
    for path in paths:
        try:
            record = load_mof_file(path)
        except SpecError as exc:
            fail(exc.message, 2)
        result = classify(record)
        results.append({"file": str(path), "name": record.name, "mof": result.to_dict()})
    if fmt is Format.json:
        typer.echo(json.dumps(results, indent=2))
        return
    table = Table("file", "release", "class", "I", "II", "III", title="MOF classification")
    for item in results:
        mof = item["mof"]
        table.add_row(item["file"], item["name"], mof["label"],
                      *(f"{mof['progress'][k]} %" for k in ("1", "2", "3")))  # fmt: skip
    out.print(table)


def _model_card(err: Console, name: str, config: Path | None) -> tuple[ModelCard, Any]:
    from cloudlet.engines.sources import resolve_source  # engines pull in more than a card needs

    spec = spec_or_exit(config)
    model_spec = spec.model(name)
    if model_spec is None:
        names = ", ".join(m.name for m in spec.models) or "(none)"
        fail(f"no model named {name!r} in the spec; models: {names}", 1)
    card_spec = cast("CardSpec | None", getattr(model_spec, "card", None))
    if card_spec is not None and config is not None:
        card_spec = card_spec.resolved(config.resolve().parent)
    policy = getattr(getattr(spec, "policy", None), "openness", None)
    source = model_spec.source or None  # remote engines have no model file here
    path: Path | None = None
    if source is not None:
        try:
            path = resolve_source(source)
        except CloudletError as exc:
            err.print(f"[yellow]warning:[/] {exc.message}; the card is built without the file")
    try:
        return build_card(name, path, card_spec, source=source), policy
    except SpecError as exc:
        fail(exc.message, 2)


def _render_card(out: Console, card: ModelCard, policy: OpennessPolicy | None) -> None:
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    rows = [
        ("model", card.name),
        ("title", card.title),
        ("producer", card.producer),
        ("licence", card.license),
        ("MOF", f"{card.mof.label}  (I {card.mof.progress[1]} %, II {card.mof.progress[2]} %, "
                f"III {card.mof.progress[3]} %)"),
    ]  # fmt: skip
    if card.artifact:
        a = card.artifact
        rows.append(("file", f"{a.file_name} ({a.format}, {a.quantization or '-'}, "
                             f"{a.size_bytes:,} bytes)"))  # fmt: skip
        rows.append(("sha256", a.sha256))
    for key, value in rows:
        if value:
            head.add_row(key, str(value))
    out.print(head)
    components = Table("class", "component", "status", "licence", "location",
                       title="Model Openness Framework components")  # fmt: skip
    declared = {c.name: c for c in card.components}
    for status in sorted(card.mof.components, key=lambda s: -s.mof_class):
        location = declared[status.name].component_path if status.name in declared else None
        components.add_row(str(status.mof_class), status.name, status.status,
                           status.license or "", location or "")  # fmt: skip
    out.print(components)
    if card.datasets:
        datasets = Table("dataset", "role", "licence", "url", title="Datasets")
        for d in card.datasets:
            datasets.add_row(d.name, d.role, d.license or "not confirmed", d.url or "")
        out.print(datasets)
    for title, items in (("Limitations", card.limitations), ("Not confirmed", card.unconfirmed)):
        if items:
            out.print(f"[bold]{title}[/]")
            for item in items:
                out.print(f"  - {item}")
    if card.sources:
        out.print("[bold]Sources[/]")
        for source in card.sources:
            out.print(f"  - {source.title}: {source.url}")
    for violation in check_policy(card, policy):
        colour = "red" if violation.refuses else "yellow"
        out.print(f"[{colour}]policy ({violation.action}):[/] {violation.message}")
