"""Shared CLI plumbing: loading the spec with friendly errors, logging, the console."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape

from cloudlet.config import Spec, load_spec
from cloudlet.errors import CloudletError, SpecError

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="Spec file (default: ./cloudlet.yaml if present, else the bundled models).",
        envvar="CLOUDLET_CONFIG",
        show_default=False,
    ),
]

EXIT_BAD_SPEC = 2
EXIT_POLICY = 3  # the openness policy refuses a model
EXIT_CANNOT_LISTEN = 6  # the address is taken (or not ours to bind)


def console(stderr: bool = False) -> Console:
    return Console(stderr=stderr, highlight=False)


def fail(message: str, code: int = 1) -> NoReturn:
    # soft_wrap: one line whatever the terminal width (logs and scripts grep for it)
    console(stderr=True).print(
        f"[bold red]error:[/] {escape(message)}", markup=True, soft_wrap=True
    )
    raise typer.Exit(code)


def spec_or_exit(path: Path | None, overrides: dict[str, Any] | None = None) -> Spec:
    """Load the spec; a bad one prints what is wrong (file, field, expectation) and exits 2."""
    try:
        return load_spec(path, overrides=overrides)
    except SpecError as exc:
        err = console(stderr=True)
        err.print(f"[bold red]error:[/] invalid spec in [bold]{escape(exc.source)}[/]")
        for field, why in exc.problems:  # escaped: "[from CLOUDLET_X]" is not markup
            err.print(f"  [cyan]{escape(field)}[/]: {escape(why)}", markup=True, highlight=False)
        raise typer.Exit(EXIT_BAD_SPEC) from None
    except CloudletError as exc:
        fail(exc.message, EXIT_BAD_SPEC)


def setup_logging(level: str, engine_level: str, log_format: str = "text") -> None:
    """Log to stderr: through Rich for a person (``text``), or one JSON object per line.

    The access log (``cloudlet.access``, one line per request) has a plain handler of its own
    in both formats: its lines are already formatted, and passing them through Rich would
    cost more than the rest of the line's request. It follows the server's level.
    """
    handler: logging.Handler
    if log_format == "json":
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_JsonFormatter())
    else:
        handler = RichHandler(console=console(stderr=True), show_path=False, rich_tracebacks=False)
    logging.basicConfig(level=level.upper(), format="%(message)s", handlers=[handler], force=True)
    logging.getLogger("cloudlet.llama_cpp").setLevel(engine_level.upper())
    for noisy in ("uvicorn.access", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
    access = logging.getLogger("cloudlet.access")
    for old in list(access.handlers):
        access.removeHandler(old)
    lines = logging.StreamHandler(sys.stderr)
    lines.setFormatter(logging.Formatter("%(message)s" if log_format == "json" else _ACCESS_TEXT))
    access.addHandler(lines)
    access.propagate = False


_ACCESS_TEXT = "%(asctime)s access %(message)s"


class _JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "message"}`` (and ``exception``), one object per line."""

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out)
