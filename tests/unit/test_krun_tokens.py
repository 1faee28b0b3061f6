"""The per-audience token cache, and the small token helpers."""

from __future__ import annotations

import base64
import json
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from krun.identity.cache import Token, TokenCache, refresh_at
from krun.identity.google import jwt_expiry, parse_rfc3339, service_agent, sts_audience


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_token_is_reused_until_a_minute_before_expiry() -> None:
    """A one-hour token is served from the cache until 59 minutes, then fetched again."""
    clock = FakeClock()
    fetched: list[str] = []

    def fetch(key: str) -> Token:
        fetched.append(key)
        return Token(f"{key}-{len(fetched)}", clock.now + 3600)

    cache = TokenCache(fetch, clock=clock)
    first = cache.get("aud")
    clock.now += 3539
    again = cache.get("aud")
    clock.now += 1
    renewed = cache.get("aud")

    assert ("aud-1", "aud-1", "aud-2") == (first.value, again.value, renewed.value)
    assert renewed.expires_at > first.expires_at


def test_keys_are_cached_separately() -> None:
    """Each audience has its own token."""
    cache = TokenCache(lambda key: Token(key, 10_000), clock=FakeClock())

    assert ("a", "b") == (cache.get("a").value, cache.get("b").value)


def test_short_tokens_refresh_at_half_life() -> None:
    """A token shorter than two minutes is refreshed at half its lifetime, not fetched in a loop."""
    assert 1015.0 == refresh_at(1000, Token("t", 1030))
    assert 1000.0 + 3540 == refresh_at(1000, Token("t", 1000 + 3600))


def test_concurrent_misses_fetch_once() -> None:
    """Many threads asking for the same audience at once share one fetch (single-flight)."""
    started = threading.Event()
    release = threading.Event()
    calls: list[str] = []

    def fetch(key: str) -> Token:
        calls.append(key)
        started.set()
        release.wait(5)
        return Token("shared", 10_000)

    cache = TokenCache(fetch, clock=FakeClock())
    with ThreadPoolExecutor(max_workers=8) as pool:
        futures = [pool.submit(cache.get, "aud") for _ in range(8)]
        assert started.wait(5)
        release.set()
        values = {f.result().value for f in futures}

    assert {"shared"} == values
    assert ["aud"] == calls


def test_failed_fetch_is_not_cached() -> None:
    """After a failure the next call fetches again."""
    attempts: list[int] = []

    def fetch(key: str) -> Token:
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("down")
        return Token("ok", 10_000)

    cache = TokenCache(fetch, clock=FakeClock())
    with pytest.raises(RuntimeError):
        cache.get("aud")

    assert "ok" == cache.get("aud").value
    assert 2 == len(attempts)


def test_invalidate_forces_a_fetch() -> None:
    """A token the server rejected can be dropped."""
    counter: list[int] = []

    def fetch(key: str) -> Token:
        counter.append(1)
        return Token(str(len(counter)), 10_000)

    cache = TokenCache(fetch, clock=FakeClock())

    cache.get("a")
    cache.invalidate("a")

    assert "2" == cache.get("a").value


def jwt_with(claims: dict[str, object]) -> str:
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"eyJhbGciOiJSUzI1NiJ9.{body}.sig"


def test_token_helpers() -> None:
    """exp is read from an unverified JWT; RFC 3339 times with fractions parse; names are Google's."""
    assert 1234.0 == jwt_expiry(jwt_with({"exp": 1234}))
    assert jwt_expiry("not-a-jwt") is None
    assert jwt_expiry(jwt_with({"sub": "x"})) is None
    assert 1767225600.0 == parse_rfc3339("2026-01-01T00:00:00Z")
    assert 1767225600.0 == parse_rfc3339("2026-01-01T00:00:00.123456789Z")
    assert "service-12@gcp-sa-meshdataplane.iam.gserviceaccount.com" == service_agent("12")
    assert "identitynamespace:td:https://c" == sts_audience("td", "https://c")
