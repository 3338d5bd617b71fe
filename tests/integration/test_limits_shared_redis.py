"""Two gateway processes sharing one Redis enforce one limit: neither can take what the other
took. Each process runs the real Redis counters with the same frozen clock (no refill during
the test, so the expected counts are exact), and both start on a signal through their stdin.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from tests.unit.counters.backends import REDIS, delete_prefix, new_prefix

_WORKER = textwrap.dedent(
    """
    import asyncio, sys
    from decimal import Decimal
    from cloudlet.counters import FakeClock, Limits, open_counters
    from cloudlet.errors import BudgetExceeded, RateLimited
    from cloudlet.pricing import Money

    url, prefix, attempts, rpm, budget = sys.argv[1:6]
    limits = Limits(
        rpm=int(rpm) or None,
        budget=Money(Decimal(budget)) if budget != "-" else None,
        period="day",
    )
    cost = Money(Decimal("0.01"))

    async def main() -> int:
        counters = open_counters(url, clock=FakeClock(1_750_000_000.0), prefix=prefix)
        await counters.budget_state("warm-up", limits)  # connect before the signal
        print("ready", flush=True)
        sys.stdin.readline()

        async def one() -> int:
            try:
                reservation = await counters.reserve("shared", limits, tokens=1, cost=cost)
            except (RateLimited, BudgetExceeded):
                return 0
            await counters.settle(reservation, tokens=1, cost=cost)
            return 1

        granted = sum(await asyncio.gather(*(one() for _ in range(int(attempts)))))
        await counters.close()
        return granted

    print(asyncio.run(main()), flush=True)
    """
)


def _run_two(prefix: str, attempts: int, rpm: int, budget: str) -> list[int]:
    args = [sys.executable, "-c", _WORKER, REDIS, prefix, str(attempts), str(rpm), budget]
    workers = [
        subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    try:
        for worker in workers:
            assert worker.stdout is not None
            assert worker.stdout.readline().strip() == "ready"
        for worker in workers:
            assert worker.stdin is not None
            worker.stdin.write("go\n")
            worker.stdin.flush()
        granted = []
        for worker in workers:
            out, _ = worker.communicate(timeout=120)
            assert worker.returncode == 0
            granted.append(int(out.strip().splitlines()[-1]))
        return granted
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()


@pytest.mark.parametrize(
    ("rpm", "budget", "limit"),
    [(50, "-", 50), (0, "0.30", 30)],
    ids=["requests-per-minute", "budget"],
)
async def test_two_processes_share_one_limit(rpm: int, budget: str, limit: int) -> None:
    prefix = new_prefix()
    try:
        granted = _run_two(prefix, attempts=40, rpm=rpm, budget=budget)
    finally:
        await delete_prefix(prefix)
    assert sum(granted) == limit  # 80 attempts in all, exactly the limit admitted
    assert all(g > 0 for g in granted) or sum(granted) == limit
