"""Who is calling: resolve the request's API key to a tenant, or refuse. Fails closed.

Two modes:

* **open** (no key needed, like Ollama) only while all of this holds: the server listens on
  loopback only, no ``CLOUDLET_ADMIN_KEY`` is set, and no API key was ever created in the
  ledger (revoked ones count). Whatever key a client sends is then ignored.
* **api-key** otherwise: every request needs the admin key or an active API key; a missing,
  unknown or revoked one gets 401.

Open mode ends for good (in this process) as soon as a key is created; revoking keys, even
the last one, never opens anything. The change is logged once. A server reachable from the
network must have a way to authenticate, or it does not start (:meth:`Tenancy.check_start`).

``CLOUDLET_ADMIN_KEY`` is accepted everywhere, with or without a ledger (``storage.ledger:
off``), and also opens the admin API.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from typing import Literal

from cloudlet.errors import AuthenticationError, PermissionDenied, UnprotectedServer
from cloudlet.ledger.keys import KeyStore, Tenant

log = logging.getLogger(__name__)

AuthMode = Literal["open", "api-key"]


class Tenancy:
    def __init__(
        self, keys: KeyStore | None, *, loopback: bool, admin_key: str | None = None
    ) -> None:
        """``keys``: the ledger's key store, ``None`` without a ledger; ``admin_key``: the
        value of ``CLOUDLET_ADMIN_KEY``, if set."""
        self._keys = keys
        self._loopback = loopback
        self._admin = hashlib.sha256(admin_key.encode()).digest() if admin_key else None
        # Closed is for good: off loopback, with an admin key, or once a key has existed.
        self._closed = not loopback or admin_key is not None

    @property
    def mode(self) -> AuthMode:
        """The mode as last seen (no I/O: ``/health`` reports it even with the ledger down)."""
        return "api-key" if self._closed else "open"

    async def open_mode(self) -> bool:
        if self._closed:
            return False
        if self._keys is not None and await self._keys.any_created():
            self._closed = True
            log.warning(
                "auth: mode changed from open to api-key: an API key was created, so every "
                "request now needs a key (revoking keys does not reopen)"
            )
            return False
        return True

    async def describe(self) -> str:
        """For the banner: the mode and what a client must send."""
        if await self.open_mode():
            return "open: no API key needed (loopback only, no admin key, no key created yet)"
        if self._keys is None:
            return "api-key: every request needs CLOUDLET_ADMIN_KEY (no ledger, no other keys)"
        admin = " or CLOUDLET_ADMIN_KEY" if self._admin is not None else ""
        return f"api-key: every request needs an API key{admin} (Authorization: Bearer …)"

    async def check_start(self) -> None:
        """Refuse to serve beyond loopback without a way to authenticate.

        Raises :class:`~cloudlet.errors.UnprotectedServer` when the server is reachable from
        the network and has neither the admin key nor an active API key: nobody could use it
        (it fails closed regardless), and it most likely means a forgotten secret.
        """
        if self._loopback or self._admin is not None:
            return
        if self._keys is not None and await self._keys.has_keys():
            return
        where = "no active API key in the ledger" if self._keys is not None else "no ledger"
        raise UnprotectedServer(
            "the server would be reachable from the network with no way to authenticate "
            f"(CLOUDLET_ADMIN_KEY is not set, {where}); set CLOUDLET_ADMIN_KEY, create a key "
            "with `cloudlet keys create`, or listen on 127.0.0.1"
        )

    async def resolve(self, token: str | None) -> Tenant:
        if token:
            if self._admin is not None and hmac.compare_digest(
                hashlib.sha256(token.encode()).digest(), self._admin
            ):
                return Tenant.admin()
            tenant = await self._keys.authenticate(token) if self._keys is not None else None
            if tenant is not None:
                return tenant
        if await self.open_mode():
            # OpenAI clients insist on sending some key ("unused", "sk-no-key"): ignore it.
            return Tenant.anonymous()
        if token:
            raise AuthenticationError(
                "Incorrect API key provided. Keys are made with `cloudlet keys create`."
            )
        raise AuthenticationError(
            "You didn't provide an API key. Send it as `Authorization: Bearer KEY`."
        )

    async def resolve_admin(self, token: str | None) -> Tenant:
        tenant = await self.resolve(token) if token else None
        if tenant is None or not tenant.is_admin:
            if tenant is None:
                raise AuthenticationError("The admin API needs the admin key (CLOUDLET_ADMIN_KEY).")
            raise PermissionDenied("The admin API needs the admin key (CLOUDLET_ADMIN_KEY).")
        return tenant
