"""What tracing adds to one request, by part: the request's life with and without cloudlet's
OpenTelemetry tracer (its server span and one attempt span, from start to end), and the OTLP
exporter's encoding of those spans (which the SDK's export thread does, holding the GIL).

Runs in-process, no server: each part's CPU time per request, median of several rounds, side
by side in the same run. ``bench_gateway.py`` measures the whole effect under load.

    python benchmarks/bench_tracing.py [--requests 5000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from cloudlet.domain import ChatMessage, GenerationRequest, ModelId, Usage
from cloudlet.gateway.life import Arrival, Recorder
from cloudlet.gateway.prices import Prices
from cloudlet.observe.tracing import OtelTracer, resource

REQUEST = GenerationRequest(
    model=ModelId("bench"), messages=(ChatMessage("user", "hi"),), max_tokens=16
)


def one(recorder: Recorder) -> None:
    """A request's life as the gateway drives it: start, one attempt that serves, the end."""
    life = recorder.begin(Arrival.now(), "chat", "bench")
    life.start(REQUEST)
    attempt = life.attempt("bench", "openai")
    with attempt.trace:
        pass
    life.served("bench", "openai", False)
    life.token()
    life.usage, life.finish_reason = Usage(9, 5), "stop"
    attempt.end(None)
    life.close("ok")


def per_request(run: Callable[[], None], n: int) -> float:
    started = time.process_time()
    for _ in range(n):
        run()
    return (time.process_time() - started) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    plain = Recorder(Prices([], dict))
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=resource())  # as the server makes it
    provider.add_span_processor(SimpleSpanProcessor(memory))
    traced = Recorder(Prices([], dict), tracer=OtelTracer(provider))
    rows: dict[str, list[float]] = {"life": [], "life + spans": [], "OTLP encoding": []}
    for _ in range(args.rounds):
        rows["life"].append(per_request(lambda: one(plain), args.requests))
        memory.clear()
        rows["life + spans"].append(per_request(lambda: one(traced), args.requests))
        spans = memory.get_finished_spans()
        started = time.process_time()
        encode_spans(spans).SerializeToString()
        rows["OTLP encoding"].append((time.process_time() - started) / args.requests * 1e6)
    med = {name: statistics.median(values) for name, values in rows.items()}
    print(f"CPU per request, median of {args.rounds} rounds of {args.requests}:")
    for name, value in med.items():
        print(f"  {name:<14} {value:7.1f} us")
    added = med["life + spans"] - med["life"] + med["OTLP encoding"]
    print(f"  tracing adds   {added:7.1f} us per request (2 spans)")


if __name__ == "__main__":
    main()
