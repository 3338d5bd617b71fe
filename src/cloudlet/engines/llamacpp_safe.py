"""Safe mode: llama.cpp without its extra CPU buffer types, for CPUs whose kernels crash.

llama.cpp repacks weights into "extra buffer types" for faster CPU kernels (AMX tiles on Intel
Xeons, interleaved layouts elsewhere). Some of those kernels crash whole processes on some
machines: on Sapphire-Rapids-class Xeons the AMX matmul faults on its first ``ldtilecfg``
(llama.cpp #20824). Turning the extra buffer types off (llama-server's ``--no-repack``) avoids
them at some speed. The supervisor (:mod:`cloudlet.engines.worker_process`) decides when: a
worker that dies from a signal while loading or on its first decode, which every engine does
before it reports ready (:func:`first_decode`), is restarted in safe mode.

``CLOUDLET_TEST_FAULT=crash-on-first-decode`` makes a worker that is *not* in safe mode kill
itself with SIGSEGV at that first decode, so that tests on any CPU can drive the same path a
real kernel fault takes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from typing import Any

import llama_cpp
import llama_cpp.llama as llama_module

FAULT_ENV = "CLOUDLET_TEST_FAULT"
CRASH_ON_FIRST_DECODE = "crash-on-first-decode"
_PATCH_LOCK = threading.Lock()


def model_params(*, safe: bool) -> Any:
    """llama.cpp's default model parameters, CPU only, extra buffer types off when ``safe``."""
    params = llama_cpp.llama_model_default_params()
    params.n_gpu_layers = 0  # the spec has no GPU setting yet
    if safe:
        params.use_extra_bufts = False
    return params


@contextlib.contextmanager
def llama_class_params(*, safe: bool) -> Iterator[None]:
    """While a ``llama_cpp.Llama`` is constructed, give it safe-mode model parameters.

    ``Llama`` builds its parameters inside ``__init__`` and has no switch for extra buffer
    types; it looks the defaults up through its module, so this swaps that one lookup (under a
    lock, for the duration of the load only). Without ``safe`` nothing is touched.
    """
    if not safe:
        yield
        return
    bindings: Any = vars(llama_module)["llama_cpp"]  # the bindings module Llama reads
    with _PATCH_LOCK:
        original = bindings.llama_model_default_params

        def defaults() -> Any:
            params = original()
            params.use_extra_bufts = False
            return params

        bindings.llama_model_default_params = defaults
        try:
            yield
        finally:
            bindings.llama_model_default_params = original


def first_decode(*, safe: bool) -> None:
    """Called just before an engine's first decode (its warm-up at load)."""
    if not safe and os.environ.get(FAULT_ENV) == CRASH_ON_FIRST_DECODE:
        os.kill(os.getpid(), signal.SIGSEGV)
