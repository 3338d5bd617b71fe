"""Turning a stream of token bytes into text: UTF-8 reassembly and stop strings.

Shared by every engine that detokenizes itself, so all of them stop and split text alike.
"""

from __future__ import annotations

import codecs
from collections.abc import Sequence


class TextAssembler:
    """Feed token bytes, get whole characters; never emits half a multi-byte character."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, data: bytes) -> str:
        return self._decoder.decode(data)

    def flush(self) -> str:
        return self._decoder.decode(b"", final=True)


class StopScanner:
    """Finds the first stop string in streamed text.

    ``feed`` returns the text that is safe to emit now and whether a stop string was hit. Text
    that could be the start of a stop string is held back until it is decided; the stop string
    itself is never emitted (OpenAI semantics); :attr:`hit` says which one it was.
    """

    def __init__(self, stops: Sequence[str]) -> None:
        self._stops = [s for s in stops if s]
        self._held = ""
        self.hit: str | None = None  # the stop string found (the earliest in the text)

    def feed(self, text: str) -> tuple[str, bool]:
        if not self._stops:
            return text, False
        buf = self._held + text
        hits = [(i, s) for s, i in ((s, buf.find(s)) for s in self._stops) if i >= 0]
        if hits:
            self._held = ""
            at, self.hit = min(hits, key=lambda hit: hit[0])
            return buf[:at], True
        hold = 0
        for stop in self._stops:
            for k in range(min(len(stop) - 1, len(buf)), hold, -1):
                if buf.endswith(stop[:k]):
                    hold = k
                    break
        self._held = buf[len(buf) - hold :]
        return buf[: len(buf) - hold], False

    def flush(self) -> str:
        held, self._held = self._held, ""
        return held
