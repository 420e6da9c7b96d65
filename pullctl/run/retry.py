"""Retry policy as pure functions: which outcome is retried, how long to wait, when to give up.

tenacity runs the loop (``fetch.py``); these functions only decide, so tests never sleep.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from pullctl.config.models import Retry


class Retryable(Exception):
    """An attempt failed in a way worth another try: a retry_on_status, a network error, a timeout."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class Fatal(Exception):
    """An attempt failed in a way another try cannot fix: a 404, a non-JSON body, a Retry-After too long."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def retry_after_seconds(header: str | None, now: datetime | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP date); None when it is no hint.

    ``0``, a date in the past and anything unparseable are no hint: the normal backoff applies.
    """
    if not header:
        return None
    header = header.strip()
    if header.isdigit():
        seconds = float(header)
    else:
        try:
            when = parsedate_to_datetime(header)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return seconds if seconds > 0 else None


def check_retry_after(policy: Retry, seconds: float | None) -> None:
    """A Retry-After beyond ``max_retry_after_seconds`` fails the item at once."""
    if seconds is not None and seconds > policy.max_retry_after_seconds:
        raise Fatal(
            f"rate limited for {seconds:.0f} s (Retry-After above max_retry_after_seconds="
            f"{policy.max_retry_after_seconds:g})"
        )


def backoff_delay(
    policy: Retry,
    attempts_made: int,
    retry_after: float | None = None,
    rng: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait after ``attempts_made`` failed attempts.

    A Retry-After hint is obeyed, capped at ``max_delay_seconds``. Otherwise exponential backoff with
    "equal jitter" (half fixed, half random) or a fixed delay, both capped at ``max_delay_seconds``.
    """
    if retry_after is not None:
        return min(retry_after, policy.max_delay_seconds)
    if policy.backoff == "fixed":
        return min(policy.initial_delay_seconds, policy.max_delay_seconds)
    base = min(policy.initial_delay_seconds * 2 ** (attempts_made - 1), policy.max_delay_seconds)
    return base / 2 + rng() * base / 2
