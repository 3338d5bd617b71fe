"""Send llama.cpp's log lines to Python logging instead of straight to stderr.

llama.cpp logs through one process-wide callback. We install ours once (idempotent), mapping
ggml's levels to logging levels under the ``cloudlet.llama_cpp`` logger; the server decides what
is shown (quiet by default: errors only). llama-cpp-python's own Python ``print`` chatter while a
model loads is captured by :func:`captured_prints` and logged at debug level.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import io
import logging
import threading
from collections.abc import Callable, Iterator

import llama_cpp

# ggml.h: NONE=0, DEBUG=1, INFO=2, WARN=3, ERROR=4, CONT=5 (continues the previous line).
_LEVELS = {
    0: logging.CRITICAL,
    1: logging.DEBUG,
    2: logging.INFO,
    3: logging.WARNING,
    4: logging.ERROR,
}
_CONT = 5
LOGGER_NAME = "cloudlet.llama_cpp"


@functools.cache
def route_llama_logs() -> Callable[..., None]:
    """Install the forwarding callback once per process; returns it (kept alive by the cache)."""
    logger = logging.getLogger(LOGGER_NAME)
    last = [logging.DEBUG]  # the level a CONT line inherits

    @llama_cpp.llama_log_callback  # type: ignore[untyped-decorator]
    def forward(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        lvl = last[0] if level == _CONT else _LEVELS.get(level, logging.DEBUG)
        last[0] = lvl
        message = text.decode("utf-8", errors="replace").rstrip()
        if message and logger.isEnabledFor(lvl):
            logger.log(lvl, "%s", message)

    llama_cpp.llama_log_set(forward, ctypes.c_void_p(0))
    return forward


@functools.cache
def _stderr_lock() -> threading.Lock:
    return threading.Lock()


@contextlib.contextmanager
def captured_prints(what: str) -> Iterator[None]:
    """Capture llama-cpp-python's Python prints to stderr while loading ``what``.

    ``Llama(verbose=False)`` would instead dup2 the process's stderr to /dev/null, hiding every
    thread's output; ``sys.stderr`` is process-wide too, so loads take turns under a lock.
    """
    chatter = io.StringIO()
    with _stderr_lock(), contextlib.redirect_stderr(chatter):
        yield
    if chatter.getvalue().strip():
        logging.getLogger(LOGGER_NAME).debug("%s: %s", what, chatter.getvalue().strip())
