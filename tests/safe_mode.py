"""Whether tests that run a llama.cpp engine in the pytest process must run it in safe mode here.

`cloudlet serve` and `cloudlet chat` never load llama.cpp in their own process: a worker that
dies from a kernel fault while loading or on its first decode is restarted in safe mode. A test
that drives an engine in-process has no such supervisor, and a fault would end the whole test
run (llama.cpp's AMX kernels do that on Sapphire-Rapids-class Xeons; AMD EPYCs run them fine).
So such tests ask first the way a `cloudlet worker` on its own does
(:func:`cloudlet.engines.llamacpp_probe.kernels_crash`): never guessed from the CPU's name.
"""

from __future__ import annotations

import functools

from cloudlet.config import ModelSpec
from cloudlet.engines.llamacpp_probe import kernels_crash


@functools.cache
def _crashes(source: str, kind: str) -> bool:
    probe = {"name": "probe", "kind": kind, "source": source}
    return kernels_crash(ModelSpec.model_validate(probe))


def for_this_machine(spec: ModelSpec) -> ModelSpec:
    """``spec`` with ``safe_mode: on`` where its model's kernels crash a process on this machine,
    else ``off`` (probed once per model file, in a child process)."""
    crashes = _crashes(spec.source, spec.kind)
    return spec.model_copy(update={"safe_mode": "on" if crashes else "off"})
