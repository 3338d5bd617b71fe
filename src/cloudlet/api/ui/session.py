"""The dashboard's login session: a signed cookie that never holds the admin key.

The admin key (``CLOUDLET_ADMIN_KEY``) is the only credential the dashboard takes. Logging in
sets a cookie ``<expiry>.<nonce>.<mac>``: ``mac`` is an HMAC-SHA256 over expiry and nonce
under a secret derived from the admin key (itself an HMAC, so the cookie can neither reveal
the key nor be forged without it). Every gateway replica with the same admin key accepts it;
changing the key logs everyone out. Logging out revokes the nonce in this process and clears
the cookie; a session otherwise ends at its expiry.

Forms that change state (log in, log out) are checked against cross-site use three ways: the
cookie is ``SameSite=Strict``, a present ``Origin`` must be this server's, and logging out needs
the session's CSRF token (an HMAC of its nonce), which only a page of this site can read.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from urllib.parse import urlsplit

COOKIE = "cloudlet_ui"
MAX_AGE_S = 12 * 3600
_DERIVE = b"cloudlet dashboard session v1"


class Sessions:
    """Issues and checks session cookies for one admin key (None: nobody can log in)."""

    def __init__(
        self,
        admin_key: str | None,
        *,
        max_age_s: int = MAX_AGE_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._key_digest = hashlib.sha256(admin_key.encode()).digest() if admin_key else None
        self._secret = (
            hmac.new(admin_key.encode(), _DERIVE, hashlib.sha256).digest() if admin_key else None
        )
        self.max_age_s = max_age_s
        self._clock = clock
        self._revoked: dict[str, int] = {}  # nonce -> expiry

    @property
    def enabled(self) -> bool:
        """Whether anyone can log in (an admin key is set)."""
        return self._secret is not None

    def check_key(self, key: str) -> bool:
        """Whether ``key`` is the admin key (compared in constant time, as digests)."""
        if self._key_digest is None or not key:
            return False
        return hmac.compare_digest(hashlib.sha256(key.encode()).digest(), self._key_digest)

    def issue(self) -> str:
        """A new session's cookie value."""
        expiry = int(self._clock()) + self.max_age_s
        nonce = secrets.token_urlsafe(16)
        return f"{expiry}.{nonce}.{self._mac(f'{expiry}.{nonce}')}"

    def valid(self, cookie: str | None) -> bool:
        return self._nonce(cookie) is not None

    def csrf(self, cookie: str | None) -> str:
        """The CSRF token of the session ``cookie`` ("" without a valid one)."""
        nonce = self._nonce(cookie)
        return self._mac(f"csrf.{nonce}") if nonce is not None else ""

    def check_csrf(self, cookie: str | None, token: str) -> bool:
        expected = self.csrf(cookie)
        return bool(expected) and hmac.compare_digest(expected.encode(), token.encode())

    def revoke(self, cookie: str | None) -> None:
        nonce = self._nonce(cookie)
        if nonce is None:
            return
        now = int(self._clock())
        self._revoked = {n: e for n, e in self._revoked.items() if e > now}  # forget expired
        expiry, _, _ = (cookie or "").partition(".")
        self._revoked[nonce] = int(expiry)

    def _nonce(self, cookie: str | None) -> str | None:
        if self._secret is None or not cookie or len(cookie) > 256:
            return None
        parts = cookie.split(".")
        if len(parts) != 3 or not parts[0].isdigit():
            return None
        expiry, nonce, mac = parts
        if not hmac.compare_digest(mac.encode(), self._mac(f"{expiry}.{nonce}").encode()):
            return None
        if int(expiry) <= self._clock() or nonce in self._revoked:
            return None
        return nonce

    def _mac(self, message: str) -> str:
        assert self._secret is not None
        return hmac.new(self._secret, message.encode(), hashlib.sha256).hexdigest()


def same_origin(origin: str | None, host: str | None) -> bool:
    """Whether a request's ``Origin`` header (absent: a same-origin navigation in older
    browsers, or a non-browser client) names the host the request was sent to."""
    if origin is None:
        return True
    if not host or origin == "null":
        return False
    return urlsplit(origin).netloc.lower() == host.lower()
