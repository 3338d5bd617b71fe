"""Entry point: `cloudlet <command>`."""

from __future__ import annotations

from typing import Annotated

import typer

from cloudlet import __version__
from cloudlet.cli import bench, card, chat, deploy, keys, operator, serve, usage, worker

app = typer.Typer(
    name="cloudlet",
    help="Your own small AI cloud: open models behind one OpenAI-compatible API.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    pretty_exceptions_show_locals=False,
)
app.command()(serve.serve)
app.command()(worker.worker)
app.command()(chat.chat)
app.command()(chat.models)
card.register(app)
app.command()(deploy.deploy)
app.command()(operator.operator)
keys.register(app)
usage.register(app)
app.command()(bench.bench)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"cloudlet {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """Your own small AI cloud: open models behind one OpenAI-compatible API."""


def command() -> typer.core.TyperGroup:
    """The CLI as a command, with flags shown without a type: typer labels every flag (and
    --help) ``<bool>``, which reads as if it took a value."""
    root = typer.main.get_command(app)
    assert isinstance(root, typer.core.TyperGroup)
    pending: list[typer.core.TyperCommand | typer.core.TyperGroup] = [root]
    while pending:
        cmd = pending.pop()
        pending.extend(getattr(cmd, "commands", {}).values())
        for param in [*cmd.params, cmd.get_help_option(typer.Context(cmd))]:
            if isinstance(param, typer.core.TyperOption) and param.is_flag:
                param.metavar = ""
    return root


def run() -> None:
    command()()
