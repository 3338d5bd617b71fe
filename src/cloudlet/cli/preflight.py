"""What `cloudlet serve` checks before it binds a port or loads a model, each failure one line
with its own exit code (also listed in ``cloudlet serve --help`` and the README):

    1  anything else
    2  a bad spec, or a ``${VAR}`` in a storage URL that is not set
    3  the openness policy refuses a model (``on_violation: refuse``)
    4  the ledger's database cannot be reached or opened
    5  the server would be reachable from the network with no way to authenticate
    6  the address is taken (checked in :mod:`cloudlet.cli.serve`, once these passed)

The server's own start-up checks the same again (it fails closed without this module); doing
it here first turns each case into one clear line instead of a traceback.
"""

from __future__ import annotations

import asyncio

from cloudlet.cli.common import EXIT_BAD_SPEC, fail
from cloudlet.config import Spec
from cloudlet.config.storage import StorageSpec
from cloudlet.errors import SpecError, StorageUnavailable, UnprotectedServer
from cloudlet.gateway.tenancy import Tenancy
from cloudlet.ledger.store import Ledger

EXIT_STORAGE = 4
EXIT_UNPROTECTED = 5


def preflight(spec: Spec, admin_key: str | None) -> None:
    """Resolve the storage URLs, open the ledger once, and check that auth fails closed."""
    try:
        storage = spec.storage.resolved()
    except SpecError as exc:
        field, why = exc.problems[0]
        fail(f"{field}: {why}", EXIT_BAD_SPEC)
    try:
        asyncio.run(_check(spec, storage, admin_key))
    except StorageUnavailable as exc:
        fail(exc.message, EXIT_STORAGE)
    except UnprotectedServer as exc:
        fail(exc.message, EXIT_UNPROTECTED)


async def _check(spec: Spec, storage: StorageSpec, admin_key: str | None) -> None:
    loopback = spec.server.is_loopback
    if storage.ledger == "off":
        await Tenancy(None, loopback=loopback, admin_key=admin_key).check_start()
        return
    ledger = await Ledger.open(storage, start_writer=False)
    try:
        await Tenancy(ledger.keys, loopback=loopback, admin_key=admin_key).check_start()
    finally:
        await ledger.close()
