"""Instructions per gateway request, counted by callgrind: a before/after that noise cannot move.

Timings on a shared 2-vCPU VM move 20 % from round to round (docs/benchmarks.md), more than a
change to the request path is worth. Instructions do not: ``valgrind --tool=callgrind`` counts
what the server process executes, the same count for the same code and input whatever else the
machine is doing. So this runs ``cloudlet serve`` under callgrind with instrumentation off
(startup and imports cost nothing), sends warm-up requests, then switches counting on for a
fixed number of sequential requests (the 1-client path: the same upstream and body as
``bench_gateway.py``), twice, and reports instructions per request. ``--tree`` adds other
checkouts (a git worktree of an older revision) to compare, each counted the same way.

    python benchmarks/count_gateway.py [--requests 200] [--keys] [--tracing] [--tree DIR]...

Needs valgrind (Debian package ``valgrind``) and nginx. Counts only: a request under callgrind
runs about 50 times slower, so timing it says nothing. ``--annotate`` writes
``callgrind_annotate``'s report per tree (C functions of the interpreter and extensions).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_gateway import (
    BODY,
    KEY,
    ROOT,
    bench_spec,
    free_port,
    machine,
    running,
    tenant_key,
    upstream,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200, help="counted requests per batch")
    parser.add_argument("--keys", action="store_true", help="API key, limits and a ledger")
    parser.add_argument(
        "--tracing",
        action="store_true",
        help="OTLP tracing to a local receiver (the server "
        "process is counted, not its span exporter process)",
    )
    parser.add_argument("--tree", type=Path, action="append", default=[], help="also count DIR")
    parser.add_argument("--annotate", action="store_true", help="write callgrind_annotate's")
    args = parser.parse_args()
    for tool in ("valgrind", "callgrind_control"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is needed (apt-get install valgrind)")
    trees = [ROOT, *args.tree]
    counts = {}
    with tempfile.TemporaryDirectory(prefix="count-gateway-") as name:
        tmp = Path(name)
        with upstream(tmp) as (_, sse_base, receiver):
            for i, tree in enumerate(trees):
                counts[tree] = count(tree, sse_base, receiver, tmp / str(i), args)
    side = "with keys, limits and a ledger" if args.keys else "routing only"
    side += ", tracing on" if args.tracing else ""
    print(f"\n{machine()}; {args.requests} sequential requests per batch, {side}")
    base = counts[ROOT]
    for tree, per in counts.items():
        ratio = f"  {per / base:.3f}x this checkout" if tree != ROOT else ""
        print(f"{per / 1000:9.1f} k instructions/request  {tree}{ratio}")


def count(tree: Path, sse_base: str, receiver: str, tmp: Path, args: argparse.Namespace) -> float:
    """Instructions per request of ``cloudlet serve`` from ``tree`` (the lower of two
    batches: they differ by well under 1 %)."""
    tmp.mkdir()
    spec = tmp / "cloudlet.yaml"
    spec.write_text(bench_spec(sse_base, keys=args.keys))
    out = tmp / "callgrind.out"
    port = free_port()
    env = {
        "CLOUDLET_ADMIN_KEY": KEY,
        "XDG_DATA_HOME": str(tmp / "data"),
        "PYTHONPATH": str(tree.resolve() / "src"),
    }
    if args.tracing:
        env |= {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver, "OTEL_SERVICE_NAME": "cloudlet-bench"}
    command = ["valgrind", "--tool=callgrind", "--instr-atstart=no"]
    command += [f"--callgrind-out-file={out}", sys.executable, "-m", "cloudlet", "serve"]
    command += ["--config", str(spec), "--port", str(port)]
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    per_batch = []
    with running(command, f"http://127.0.0.1:{port}/ready", tmp / "serve.log", env) as server:
        key = tenant_key(url) if args.keys else KEY
        with httpx.Client(timeout=300, headers={"Authorization": f"Bearer {key}"}) as client:
            for _ in range(50):  # warm-up: first-call caches, connection to the upstream
                client.post(url, json=BODY).raise_for_status()
            for batch in (1, 2):
                control(server.pid, "-z")  # zero the counters
                control(server.pid, "-i", "on")
                for _ in range(args.requests):
                    client.post(url, json=BODY).raise_for_status()
                control(server.pid, "-i", "off")
                control(server.pid, "-d", f"batch{batch}")
                dump = Path(f"{out}.{batch}")
                totals = re.search(r"^totals:\s+(\d+)", dump.read_text(errors="replace"), re.M)
                if totals is None:
                    raise RuntimeError(f"no totals in {dump}")
                per_batch.append(int(totals.group(1)) / args.requests)
                print(f"{tree}: batch {batch}: {per_batch[-1] / 1000:.1f} k", flush=True)
            if args.annotate:
                report = subprocess.run(
                    ["callgrind_annotate", "--inclusive=no", str(dump)],
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
                target = Path(tempfile.gettempdir()) / f"callgrind-{tree.resolve().name}.txt"
                target.write_text(report)
                print(f"annotated: {target}")
    return min(per_batch)


def control(pid: int, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(pid)], check=True, capture_output=True)


if __name__ == "__main__":
    main()
