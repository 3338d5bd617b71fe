"""The dashboard's session cookie: signed, expiring, revocable, and free of the admin key."""

from __future__ import annotations

from cloudlet.api.ui.session import Sessions, same_origin

KEY = "admin-key-for-session-tests"


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def test_a_session_is_valid_until_it_expires() -> None:
    clock = Clock()
    sessions = Sessions(KEY, max_age_s=60, clock=clock)
    cookie = sessions.issue()
    assert KEY not in cookie
    assert sessions.valid(cookie)
    clock.now += 59
    assert sessions.valid(cookie)
    clock.now += 2
    assert not sessions.valid(cookie)
    assert sessions.csrf(cookie) == ""


def test_tampering_and_other_keys_fail() -> None:
    sessions = Sessions(KEY)
    cookie = sessions.issue()
    expiry, nonce, mac = cookie.split(".")
    assert not sessions.valid(f"{int(expiry) + 3600}.{nonce}.{mac}")  # extended by hand
    assert not sessions.valid(f"{expiry}.other.{mac}")
    assert not sessions.valid(cookie + "0")
    assert not Sessions("another-key").valid(cookie)
    assert Sessions(KEY).valid(cookie)  # another replica with the same key accepts it
    for junk in (None, "", "a.b", "x.y.z", "." * 300):
        assert not sessions.valid(junk)


def test_csrf_tokens_are_per_session_and_revocation_ends_it() -> None:
    sessions = Sessions(KEY)
    one, two = sessions.issue(), sessions.issue()
    assert sessions.csrf(one) != sessions.csrf(two)
    assert sessions.check_csrf(one, sessions.csrf(one))
    assert not sessions.check_csrf(one, sessions.csrf(two))
    assert not sessions.check_csrf(None, "")
    sessions.revoke(one)
    assert not sessions.valid(one)
    assert sessions.valid(two)


def test_without_an_admin_key_nobody_logs_in() -> None:
    sessions = Sessions(None)
    assert not sessions.enabled
    assert not sessions.check_key("")
    assert not sessions.check_key("anything")
    assert Sessions(KEY).check_key(KEY)
    assert not Sessions(KEY).check_key(KEY + " ")


def test_same_origin() -> None:
    assert same_origin(None, "127.0.0.1:8080")
    assert same_origin("http://127.0.0.1:8080", "127.0.0.1:8080")
    assert not same_origin("http://evil.example", "127.0.0.1:8080")
    assert not same_origin("null", "127.0.0.1:8080")
