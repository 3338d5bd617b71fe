"""The access log: one line per request on the ``cloudlet.access`` logger, at INFO.

A line is ``key=value`` pairs (logfmt: a person reads it, a tool splits it) or, with
``server.log_format: json``, one JSON object. It says what happened to the request (its id,
operation, model, route, target, status, tokens, timings, cost, spill, team) and never what
was in it: no prompt or completion text, no API key (not even its id). Values that are not
plain words are quoted and escaped, so a client cannot forge a line with a newline in a model
name.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from cloudlet.gateway.record import RequestRecord

ACCESS_LOGGER = "cloudlet.access"

_PLAIN = re.compile(r"[A-Za-z0-9._:/@+-]+")


def _value(text: str) -> str:
    return text if _PLAIN.fullmatch(text) else json.dumps(text)


class AccessLog:
    """A :class:`~cloudlet.gateway.record.Sink` writing each record as one log line."""

    def __init__(self, *, json_lines: bool = False, logger: logging.Logger | None = None) -> None:
        self._log = logger or logging.getLogger(ACCESS_LOGGER)
        self._json = json_lines

    def record(self, record: RequestRecord) -> None:
        if not self._log.isEnabledFor(logging.INFO):
            return
        self._log.info(self._json_line(record) if self._json else self._text_line(record))

    @staticmethod
    def fields(record: RequestRecord) -> dict[str, Any]:
        """The line's fields, in order (None where a field does not apply)."""
        return {
            "ts": record.ts.isoformat(timespec="milliseconds"),
            "request_id": record.request_id,
            "operation": record.operation,
            "model": record.model,
            "route": record.route,
            "target": record.target,
            "status": record.status,
            "error": record.error,
            "http_status": record.http_status,
            "stream": record.stream,
            "prompt_tokens": record.prompt_tokens,
            "completion_tokens": record.completion_tokens,
            "ttft_s": None if record.ttft_s is None else round(record.ttft_s, 6),
            "duration_s": round(record.duration_s, 6),
            "cost": f"{record.cost.amount:f}",
            "cloud_equivalent_cost": f"{record.cloud_equivalent.amount:f}",
            "currency": record.cost.currency,
            "spilled": record.spilled,
            "team": record.team,
        }

    def _json_line(self, record: RequestRecord) -> str:
        return json.dumps(self.fields(record), separators=(",", ":"))

    @staticmethod
    def _text_line(record: RequestRecord) -> str:
        parts = [
            f"request_id={_value(record.request_id)}",
            f"op={record.operation}",
            f"model={_value(record.model)}",
        ]
        if record.route is not None:
            parts.append(f"route={_value(record.route)}")
        parts.append(f"target={_value(record.target) if record.target else '-'}")
        parts.append(f"status={record.status}")
        if record.error is not None:
            parts.append(f"error={_value(record.error)}")
        parts.append(f"http_status={record.http_status}")
        if record.stream:
            parts.append("stream=true")
        parts.append(f"tokens={record.prompt_tokens}+{record.completion_tokens}")
        if record.ttft_s is not None:
            parts.append(f"ttft_s={record.ttft_s:.4f}")
        parts.append(f"duration_s={record.duration_s:.4f}")
        parts.append(f"cost={record.cost.amount:f}")
        parts.append(f"currency={record.cost.currency}")
        if record.spilled:
            parts.append("spilled=true")
        if record.team is not None:
            parts.append(f"team={_value(record.team)}")
        return " ".join(parts)
