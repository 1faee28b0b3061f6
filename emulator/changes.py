"""Change notification shared by the world and the mesh model.

A generation counter; each bump wakes every asyncio waiter, whichever thread
and event loop it waits in, so a metadata `wait_for_change` or an xDS push
loop reacts to a change made from a test thread or the admin API.
"""

from __future__ import annotations

import asyncio
import threading


class Changes:
    """A thread-safe generation counter with one-shot asyncio subscriptions."""

    def __init__(self) -> None:
        self._generation = 0
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []
        self._lock = threading.Lock()

    @property
    def generation(self) -> int:
        return self._generation

    @property
    def waiting(self) -> int:
        """How many subscriptions the next bump will wake."""
        with self._lock:
            return len(self._waiters)

    def bump(self) -> int:
        """Record a change, wake every subscriber, return the new generation."""
        with self._lock:
            self._generation += 1
            generation = self._generation
            waiters, self._waiters = self._waiters, []
        for loop, event in waiters:
            if not loop.is_closed():
                loop.call_soon_threadsafe(event.set)
        return generation

    def subscribe(self, loop: asyncio.AbstractEventLoop, event: asyncio.Event) -> None:
        """Set `event` (in `loop`) at the next bump."""
        with self._lock:
            self._waiters.append((loop, event))

    def unsubscribe(self, loop: asyncio.AbstractEventLoop, event: asyncio.Event) -> None:
        """Forget a subscription a waiter gave up on (a no-op once a bump consumed it)."""
        with self._lock:
            self._waiters = [w for w in self._waiters if w != (loop, event)]
