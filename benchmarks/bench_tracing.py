"""What tracing adds to one request, by part: the request's life with and without cloudlet's
tracer (ids, the sampler, the two spans' descriptions), the pickling that sends those spans to
the span exporter process, and what that process does with them: unpickling and cloudlet's
OTLP encoding, side by side with the SDK's way (its spans, then its OTLP encoder) that the
encoding replaced.

Runs in-process, no server: each part's CPU time per request, median of several rounds, side
by side in the same run. ``bench_gateway.py`` measures the whole effect under load.

    python benchmarks/bench_tracing.py [--requests 5000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import pickle
import statistics
import time
from collections.abc import Callable

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from cloudlet.domain import ChatMessage, GenerationRequest, ModelId, Usage
from cloudlet.gateway.life import Arrival, Recorder
from cloudlet.gateway.prices import Prices
from cloudlet.observe.otlp import Encoder
from cloudlet.observe.span_process import BATCH
from cloudlet.observe.spans import SpanData, SpanWriter, resource
from cloudlet.observe.tracing import OtelTracer

REQUEST = GenerationRequest(
    model=ModelId("bench"), messages=(ChatMessage("user", "hi"),), max_tokens=16
)


class Collect:
    """An outlet that keeps the spans, as the span process does between two sends."""

    def __init__(self) -> None:
        self.spans: list[SpanData] = []

    def put(self, spans: list[SpanData]) -> None:
        self.spans.extend(spans)


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
    n = args.requests
    plain = Recorder(Prices([], dict))
    outlet = Collect()
    traced = Recorder(Prices([], dict), tracer=OtelTracer(outlet))
    memory = InMemorySpanExporter()
    writer = SpanWriter([SimpleSpanProcessor(memory)])
    encoder = Encoder(resource())
    rows: dict[str, list[float]] = {
        "life": [],
        "life + tracer": [],
        "pickling": [],
        "child: unpickling": [],
        "child: OTLP encoding": [],
        "SDK: spans": [],
        "SDK: OTLP encoding": [],
    }
    for _ in range(args.rounds):
        rows["life"].append(per_request(lambda: one(plain), n))
        outlet.spans.clear()
        rows["life + tracer"].append(per_request(lambda: one(traced), n))
        spans = outlet.spans
        batches = [spans[at : at + BATCH] for at in range(0, len(spans), BATCH)]
        started = time.process_time()
        frames = [pickle.dumps(batch, pickle.HIGHEST_PROTOCOL) for batch in batches]
        rows["pickling"].append((time.process_time() - started) / n * 1e6)
        started = time.process_time()
        for frame in frames:
            pickle.loads(frame)
        rows["child: unpickling"].append((time.process_time() - started) / n * 1e6)
        started = time.process_time()
        for batch in batches:
            encoder.encode(batch)
        rows["child: OTLP encoding"].append((time.process_time() - started) / n * 1e6)
        memory.clear()
        started = time.process_time()
        writer.put(spans)
        rows["SDK: spans"].append((time.process_time() - started) / n * 1e6)
        finished = memory.get_finished_spans()
        started = time.process_time()
        for at in range(0, len(finished), BATCH):
            encode_spans(finished[at : at + BATCH]).SerializeToString()
        rows["SDK: OTLP encoding"].append((time.process_time() - started) / n * 1e6)
    med = {name: statistics.median(values) for name, values in rows.items()}
    print(f"CPU per request, median of {args.rounds} rounds of {n} (2 spans each):")
    for name, value in med.items():
        print(f"  {name:<21} {value:7.1f} us")
    loop = med["life + tracer"] - med["life"] + med["pickling"]
    child = med["child: unpickling"] + med["child: OTLP encoding"]
    sdk = med["child: unpickling"] + med["SDK: spans"] + med["SDK: OTLP encoding"]
    print(f"  on the event loop     {loop:7.1f} us per request")
    print(f"  in the child process  {child:7.1f} us per request (the SDK's way: {sdk:.1f} us)")


if __name__ == "__main__":
    main()
