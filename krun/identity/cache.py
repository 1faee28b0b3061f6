"""A per-key token cache with single-flight refresh, refreshed before expiry.

A token is served until `margin` before it expires: one minute, or half the lifetime for
tokens shorter than two minutes (the original served tokens a minute *past* a 45-minute
guess). Concurrent callers missing the same key wait for one fetch instead of each
fetching (the original had no single-flight). A failed fetch is not cached.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

MARGIN = 60.0


@dataclass(frozen=True, slots=True)
class Token:
    """A token and when it stops working (seconds since the epoch)."""

    # Not in repr(): a secret must not reach a log line or a traceback.
    value: str = field(repr=False)
    expires_at: float


@dataclass(frozen=True, slots=True)
class _Entry:
    token: Token
    refresh_at: float


def refresh_at(fetched_at: float, token: Token) -> float:
    """When to fetch a replacement for `token`, fetched at `fetched_at` (pure)."""
    lifetime = max(0.0, token.expires_at - fetched_at)
    return token.expires_at - min(MARGIN, lifetime / 2)


class TokenCache:
    """`get(key)` returns a fresh token for `key`, fetching it with `fetch(key)` when needed."""

    def __init__(
        self, fetch: Callable[[str], Token], *, clock: Callable[[], float] = time.time
    ) -> None:
        self._fetch = fetch
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def _fresh(self, key: str) -> Token | None:
        entry = self._entries.get(key)
        if entry is not None and self._clock() < entry.refresh_at:
            return entry.token
        return None

    def get(self, key: str) -> Token:
        with self._lock:
            token = self._fresh(key)
            if token is not None:
                return token
            key_lock = self._locks.setdefault(key, threading.Lock())
        with key_lock:
            # Another caller may have fetched while this one waited.
            with self._lock:
                token = self._fresh(key)
            if token is not None:
                return token
            fetched_at = self._clock()
            token = self._fetch(key)
            with self._lock:
                self._entries[key] = _Entry(token, refresh_at(fetched_at, token))
            return token

    def put(self, key: str, token: Token) -> None:
        """Cache a token obtained elsewhere (discovery's first access token)."""
        with self._lock:
            self._entries[key] = _Entry(token, refresh_at(self._clock(), token))

    def invalidate(self, key: str) -> None:
        """Forget `key`'s token (e.g. after the server rejected it)."""
        with self._lock:
            self._entries.pop(key, None)
