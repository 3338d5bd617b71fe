"""The remote engine's connections: one aiohttp session per replica, on the request path.

Why aiohttp here, while the CLI and the workers' control calls use httpx: it is the gateway's
largest per-request cost. Measured on the 2-core AMD EPYC VM against nginx returning a fixed
streamed chat completion, one request at a time on uvloop (``/tmp`` script, CPU time of the
client process per request, three rounds): httpx through ``AsyncHTTPTransport`` (already its
cheapest path, no client, no pool scan) 710-800 us, aiohttp 235-250 us. httpx wraps every
socket call in anyio cancel scopes and checkpoints and parses with the pure-Python h11;
aiohttp parses with llhttp in C on plain asyncio streams. An earlier httpx pool of many
connections was slower still (it scanned every connection per request), which aiohttp's
connector does not: it keeps idle connections per host in a deque.

Each session: no cookies kept, nothing from the environment (proxies, ``.netrc``), and
redirects are refused per request (``allow_redirects=False``), so an upstream can never send
us, and our key, elsewhere. Connect and idle-read timeouts come from the model's spec; a wait
for a pooled connection is bounded by the replica's own slots, not here.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable

import aiohttp
import certifi

#: Longest response header line or field an upstream may send (aiohttp's default is 8 KiB;
#: cloud gateways send long ones, such as rate-limit and tracing headers).
MAX_HEADER_BYTES = 64 << 10


def session_factory(
    *, uds: str | None, limit: int, connect_s: float, read_s: float
) -> Callable[[], aiohttp.ClientSession]:
    """A maker of sessions of at most ``limit`` connections each (one per replica); call it in
    the event loop. One TLS context serves all of them: loading CA certificates is slow."""
    tls = ssl.create_default_context(cafile=certifi.where())
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect_s, sock_read=read_s)

    def make() -> aiohttp.ClientSession:
        connector: aiohttp.BaseConnector
        if uds is not None:
            connector = aiohttp.UnixConnector(path=uds, limit=limit)
        else:
            connector = aiohttp.TCPConnector(limit=limit, ssl=tls)
        return aiohttp.ClientSession(
            connector=connector,
            timeout=timeout,
            cookie_jar=aiohttp.DummyCookieJar(),
            trust_env=False,
            max_line_size=MAX_HEADER_BYTES,
            max_field_size=MAX_HEADER_BYTES,
        )

    return make
