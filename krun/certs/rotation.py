"""When to renew a certificate (pure; time and randomness are passed in).

A certificate is renewed once `share` of its lifetime has passed (0.5 by default,
`KRUN_CERT_RENEW_AT`), moved by up to `JITTER` of the lifetime either way so that many
workloads started together do not renew together, and never later than `MARGIN` seconds
before expiry, or half the lifetime for certificates shorter than twice that (the original
accepted certificates that had expired up to 5 minutes ago).
"""

from __future__ import annotations

JITTER = 0.05
"""Largest shift of the renewal time, as a share of the lifetime."""
MARGIN = 300.0
"""Renew at least this long before expiry, when the lifetime allows."""


def renew_at(
    not_before: float, not_after: float, *, share: float = 0.5, jitter: float = 0.0
) -> float:
    """The time to renew; `jitter` in [-1, 1] (e.g. `random.uniform(-1, 1)`)."""
    if not 0 < share < 1:
        raise ValueError(f"share must be in (0, 1), not {share}")
    if not -1 <= jitter <= 1:
        raise ValueError(f"jitter must be in [-1, 1], not {jitter}")
    lifetime = max(0.0, not_after - not_before)
    when = not_before + lifetime * (share + jitter * JITTER)
    latest = not_after - min(MARGIN, lifetime / 2)
    return max(not_before, min(when, latest))


def delay(
    now: float, not_before: float, not_after: float, *, share: float = 0.5, jitter: float = 0.0
) -> float:
    """Seconds from `now` until renewal; 0 when it is due (or overdue)."""
    return max(0.0, renew_at(not_before, not_after, share=share, jitter=jitter) - now)


def needs_renewal(now: float, not_before: float, not_after: float, *, share: float = 0.5) -> bool:
    """Whether a certificate found on disk must be replaced now."""
    return now >= renew_at(not_before, not_after, share=share)
