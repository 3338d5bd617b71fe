"""Where a gateway request's time goes: py-spy samples a running ``cloudlet serve`` under load.

The same fixed-answer upstream as ``bench_gateway.py`` (nginx), one cloudlet process (routing
only, or with an API key, limits and a SQLite ledger), ``wrk`` at 32 clients; py-spy samples
the server's Python stacks meanwhile. The report is the share of samples per function (self
time) and per request-path stage (inclusive time of a few cloudlet and framework functions).
``--tree DIR`` profiles another checkout (a git worktree of an older revision) for a before /
after comparison.

    python benchmarks/profile_gateway.py [--keys] [--seconds 15] [--tree DIR] [--top 25]

Needs py-spy (``pip install py-spy``), wrk and nginx. Run as root or with ptrace allowed.
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_gateway import KEY, bench_spec, free_port, machine, running, tenant_key, upstream, wrk

#: Inclusive-time probes: (label, substring of a frame "function (file)").
STAGES = [
    ("uvicorn / h11-httptools parsing and writing", "httptools_impl.py"),
    ("Starlette + FastAPI routing and dependencies", "fastapi/routing.py"),
    ("request body validation (pydantic)", "_validate_inputs"),
    ("pipeline: tenancy, admission, accounting", "pipeline.py"),
    ("router: plan, attempts", "router.py"),
    ("upstream client (aiohttp)", "aiohttp/"),
    ("upstream reply parsing (SSE)", "openai_reply.py"),
    ("metering + the request's record", "metering.py"),
    ("record: life.close and sinks", "life.py"),
    ("ledger writer (batched inserts)", "ledger/writer.py"),
    ("response serialization", "model_dump_json"),
    ("asyncio event loop itself (select, callbacks)", "base_events.py"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", action="store_true", help="API key, limits and a ledger")
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--tree", type=Path, default=None, help="checkout to run (default: this)")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    args = parser.parse_args()
    for tool in ("py-spy", "wrk"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is needed")
    with tempfile.TemporaryDirectory(prefix="profile-gateway-") as name:
        tmp = Path(name)
        with upstream(tmp) as (_, sse_base, _receiver):
            port = free_port()
            spec = tmp / "cloudlet.yaml"
            spec.write_text(bench_spec(sse_base, keys=args.keys))
            env = {"CLOUDLET_ADMIN_KEY": KEY, "XDG_DATA_HOME": str(tmp / "data")}
            if args.tree is not None:
                env["PYTHONPATH"] = str(args.tree.resolve() / "src")
            command = [sys.executable, "-m", "cloudlet", "serve", "--config", str(spec)]
            command += ["--port", str(port)]
            url = f"http://127.0.0.1:{port}/v1/chat/completions"
            with running(command, f"http://127.0.0.1:{port}/ready", tmp / "serve.log", env):
                key = tenant_key(url) if args.keys else KEY
                wrk(url, 8, 2, tmp, key)  # warm-up
                pid = _server_pid(port)
                raw = tmp / "profile.txt"
                spy = subprocess.Popen(
                    ["py-spy", "record", "--pid", str(pid), "--duration", str(args.seconds),
                     "--rate", str(args.rate), "--format", "raw", "--output", str(raw),
                     "--nonblocking"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )  # fmt: skip
                result: list[tuple[float, float, int]] = []
                load = threading.Thread(
                    target=lambda: result.append(wrk(url, 32, args.seconds, tmp, key))
                )
                load.start()
                load.join()
                spy.wait()
        print(_report(raw, args, result[0][1] if result else 0.0))


def _server_pid(port: int) -> int:
    """The pid listening on ``port`` (the cloudlet serve process)."""
    out = subprocess.run(
        ["ss", "-ltnpH", f"sport = :{port}"], capture_output=True, text=True, check=True
    ).stdout
    return int(out.split("pid=")[1].split(",")[0])


def _report(raw: Path, args: argparse.Namespace, rps: float) -> str:
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    packages: collections.Counter[str] = collections.Counter()
    ours: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        count = int(count_text)
        frames = stack.split(";")
        total += count
        if frames:
            own[frames[-1]] += count
            packages[_package(frames[-1])] += count
        for name in {_function(f) for f in frames if "cloudlet/" in f}:
            ours[name] += count
        seen = set()
        for label, probe in STAGES:
            if label not in seen and any(probe in f for f in frames):
                inclusive[label] += count
                seen.add(label)
    tree = str(args.tree) if args.tree else "this tree"
    lines = [
        f"profile of {tree}, {'keys + ledger' if args.keys else 'routing only'}, "
        f"{args.seconds} s at 32 clients ({rps:.0f} req/s) on {machine()}; "
        f"{total} samples at {args.rate} Hz (idle samples included)",
        "",
        "| stage (inclusive) | share of samples |",
        "|---|---:|",
        *(f"| {label} | {inclusive[label] / total:.1%} |" for label, _ in STAGES if total),
        "",
        "| package (self time) | share |",
        "|---|---:|",
        *(f"| {name} | {n / total:.1%} |" for name, n in packages.most_common(25)),
        "",
        "| cloudlet function (inclusive) | share |",
        "|---|---:|",
        *(f"| `{name}` | {n / total:.1%} |" for name, n in ours.most_common(args.top)),
        "",
        "| function (self time) | share |",
        "|---|---:|",
        *(f"| `{name[:110]}` | {n / total:.1%} |" for name, n in own.most_common(args.top)),
    ]
    return "\n".join(lines)


def _package(frame: str) -> str:
    """``uvicorn``, ``aiohttp``, ``cloudlet.gateway``, ``asyncio`` ... of a frame
    ``function (path/to/file.py:line)``; ``?`` for native frames without a file."""
    _, _, where = frame.rpartition("(")
    path = where.split(":")[0]
    if not path:
        return "?"
    parts = path.split("/")
    if "cloudlet" in parts:
        i = parts.index("cloudlet")
        return ".".join(parts[i : min(i + 2, len(parts) - 1)]) or "cloudlet"
    if "site-packages" in parts:
        return parts[parts.index("site-packages") + 1]
    if path.startswith("/"):  # the standard library, by absolute path
        return parts[-2]
    return parts[0]  # py-spy shortens a package's path to start at the package


def _function(frame: str) -> str:
    """``name (module.py)`` of a frame, without the line: one entry per function."""
    name, _, where = frame.rpartition(" (")
    return f"{name} ({where.split(':')[0].rpartition('/')[2]})"


if __name__ == "__main__":
    os.environ.setdefault("COLUMNS", "200")
    main()
