"""uvicorn with a graceful drain, for `cloudlet serve` and `cloudlet worker`.

The first SIGTERM/SIGINT starts a drain (see :mod:`cloudlet.api.drain`): new requests get 503,
running ones finish, and the server exits once none is left or the drain timeout has passed;
a second signal stops at once.
"""

from __future__ import annotations

import logging
from types import FrameType

import uvicorn

from cloudlet.api.drain import DrainState

log = logging.getLogger("cloudlet.serve")


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, drain: DrainState, drain_timeout_s: float) -> None:
        super().__init__(config)
        self.drain = drain
        self.drain_timeout_s = drain_timeout_s

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.drain.draining:
            super().handle_exit(sig, frame)
            return
        self.drain.begin()
        log.info(
            "draining: %d request(s) in flight, waiting up to %.0fs; new requests get 503",
            self.drain.in_flight,
            self.drain_timeout_s,
        )

    async def on_tick(self, counter: int) -> bool:
        if not self.should_exit and self.drain.done(self.drain_timeout_s):
            self.should_exit = True
        return await super().on_tick(counter)
