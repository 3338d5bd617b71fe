"""Who is calling: resolve the request's API key to a tenant, or refuse.

Open mode, for the laptop: when no key exists and the server listens on loopback only, requests
need no key, and whatever key a client sends is ignored (like Ollama). Once a key exists, or
the server is reachable from the network, every request needs one: 401 without or with a wrong
one. ``CLOUDLET_ADMIN_KEY`` is accepted everywhere and also opens the admin API.
"""

from __future__ import annotations

from cloudlet.errors import AuthenticationError, PermissionDenied
from cloudlet.ledger.keys import KeyStore, Tenant


class Tenancy:
    def __init__(self, keys: KeyStore, *, loopback: bool) -> None:
        self._keys = keys
        self._loopback = loopback

    async def open_mode(self) -> bool:
        return self._loopback and not await self._keys.has_keys()

    async def mode(self) -> str:
        """For the banner: what a client must send."""
        if await self.open_mode():
            return "open: no API key needed (loopback only, no keys created yet)"
        return "API key required (Authorization: Bearer …)"

    async def resolve(self, token: str | None) -> Tenant:
        if token:
            tenant = await self._keys.authenticate(token)
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
