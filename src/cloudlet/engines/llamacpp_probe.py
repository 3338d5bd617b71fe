"""Does a model's llama.cpp survive this CPU with all its kernels? Ask a child process.

Under `cloudlet serve` and `cloudlet chat` the supervisor (:mod:`cloudlet.engines.worker_process`)
answers that by running the worker itself: one that dies from a kernel fault while loading is
started again in safe mode. A `cloudlet worker` run on its own (an engine pod, or by hand) has
no supervisor, and restarting it as it was would crash it again (Kubernetes would loop on it).
So with ``safe_mode: auto`` it asks first, here: the model is loaded with llama.cpp's extra CPU
buffer types and decoded once (every engine does at start) in a child process, and how the
child ended decides. Detected, never guessed from the CPU's name. It costs one more load of
the model at start; ``safe_mode: on`` or ``off`` skips it.

    python -m cloudlet.engines.llamacpp_probe '<ModelSpec JSON>'   # the child
"""

from __future__ import annotations

import asyncio
import subprocess
import sys

from cloudlet.config import ModelSpec
from cloudlet.engines.worker_process import describe_exit, killed_by_kernel_fault
from cloudlet.errors import EngineUnavailable

PROBE_CONTEXT = 512  # enough for the warm-up decode; the KV cache stays small


def kernels_crash(spec: ModelSpec, timeout_s: float = 900.0) -> bool:
    """Whether loading ``spec``'s model with all CPU kernels and decoding once kills a process
    here. Raises :class:`EngineUnavailable` when the child fails in any other way."""
    probe = spec.model_copy(
        update={"parallel": 1, "queue_size": 0, "context": min(spec.context, PROBE_CONTEXT)}
    )
    child = subprocess.run(  # noqa: S603 - this interpreter, this module, a spec we validated
        [sys.executable, "-m", __name__, probe.model_dump_json()],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    if killed_by_kernel_fault(child.returncode):
        return True
    if child.returncode != 0:
        lines = child.stderr.strip().splitlines()
        last = f": {lines[-1]}" if lines else ""
        raise EngineUnavailable(
            f"model {spec.name!r}: loading it {describe_exit(child.returncode)}{last}"
        )
    return False


async def _load_once(spec: ModelSpec) -> None:
    from cloudlet.engines.factory import build_engine

    engine = build_engine(spec, in_process=True, safe_mode=False)
    await engine.start()  # loads, and decodes once
    await engine.close()


if __name__ == "__main__":
    asyncio.run(_load_once(ModelSpec.model_validate_json(sys.argv[1])))
