"""An OTLP/HTTP trace receiver on a real loopback socket, decoding with opentelemetry-proto.

It stands in for an OpenTelemetry collector: ``POST /v1/traces`` with an
``ExportTraceServiceRequest`` (protobuf, gzip or not) is answered 200 and its spans kept, as
plain :class:`Span` values, for tests to look at. It runs on its own thread so a
`cloudlet serve` subprocess can export to it while the test waits.

Run as a script (``python tests/otlp_receiver.py --port 4318``) it serves forever and only
counts what it receives: the benchmark's local receiver when nginx is not installed.
"""

from __future__ import annotations

import argparse
import gzip
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as SpanPb
from opentelemetry.proto.trace.v1.trace_pb2 import Status as StatusPb

KINDS = {
    SpanPb.SPAN_KIND_INTERNAL: "internal",
    SpanPb.SPAN_KIND_SERVER: "server",
    SpanPb.SPAN_KIND_CLIENT: "client",
    SpanPb.SPAN_KIND_PRODUCER: "producer",
    SpanPb.SPAN_KIND_CONSUMER: "consumer",
}
STATUS = {
    StatusPb.STATUS_CODE_UNSET: "unset",
    StatusPb.STATUS_CODE_OK: "ok",
    StatusPb.STATUS_CODE_ERROR: "error",
}


@dataclass(frozen=True)
class Span:
    name: str
    kind: str
    trace_id: str  # hex, as in a traceparent
    span_id: str
    parent_span_id: str  # "" for a root span
    attributes: dict[str, Any]
    status: str
    service: str
    start_ns: int
    end_ns: int


def _value(v: AnyValue) -> Any:
    which = v.WhichOneof("value")
    if which == "array_value":
        return tuple(_value(x) for x in v.array_value.values)
    if which is None:
        return None
    return getattr(v, which)


def decode(body: bytes) -> list[Span]:
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    spans = []
    for resource_spans in request.resource_spans:
        resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
        for scope_spans in resource_spans.scope_spans:
            for s in scope_spans.spans:
                spans.append(
                    Span(
                        name=s.name,
                        kind=KINDS.get(s.kind, "unspecified"),
                        trace_id=s.trace_id.hex(),
                        span_id=s.span_id.hex(),
                        parent_span_id=s.parent_span_id.hex(),
                        attributes={a.key: _value(a.value) for a in s.attributes},
                        status=STATUS[s.status.code],
                        service=str(resource.get("service.name", "")),
                        start_ns=s.start_time_unix_nano,
                        end_ns=s.end_time_unix_nano,
                    )
                )
    return spans


class OtlpReceiver:
    """Start with :meth:`start`; ``endpoint`` is what OTEL_EXPORTER_OTLP_ENDPOINT takes."""

    def __init__(self, decode_spans: bool = True) -> None:
        self._decode = decode_spans
        self._lock = threading.Lock()
        self._spans: list[Span] = []
        self.exports = 0
        self.bytes = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def spans(self) -> list[Span]:
        with self._lock:
            return list(self._spans)

    def wait_for(self, count: int, timeout: float = 30.0) -> list[Span]:
        """The spans once at least ``count`` have arrived (or whatever came by ``timeout``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            spans = self.spans()
            if len(spans) >= count:
                return spans
            time.sleep(0.05)
        return self.spans()

    def start(self, port: int = 0) -> OtlpReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as a collector does

            def do_GET(self) -> None:  # a readiness probe, and the count of exports
                if self.path not in ("/", "/exports"):
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = str(receiver.exports).encode() if self.path == "/exports" else b""
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                size = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(size)
                if self.headers.get("Content-Encoding", "").lower() == "gzip":
                    body = gzip.decompress(body)
                if self.path != "/v1/traces":
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                receiver._received(body)
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="otlp-receiver", daemon=True
        )
        self._thread.start()
        return self

    def _received(self, body: bytes) -> None:
        spans = decode(body) if self._decode else []
        with self._lock:
            self.exports += 1
            self.bytes += len(body)
            self._spans.extend(spans)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def main() -> None:
    parser = argparse.ArgumentParser(description="A local OTLP/HTTP trace receiver.")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    receiver = OtlpReceiver(decode_spans=False).start(args.port)
    print(receiver.endpoint, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        receiver.stop()


if __name__ == "__main__":
    main()
