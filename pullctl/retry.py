"""When to try again, as data: ``decide(policy, outcome, attempt) -> Retry(delay) | GiveUp(reason)``.

``decide`` is pure (tests of the table need no sleeps); ``call_with_retries`` is the one loop that obeys
it, used by the fetcher, the event sinks and the DAPR start-up sync. An attempt that fails raises
``AttemptFailed(outcome)``; the loop asks ``decide`` and either sleeps and calls again or raises
``GaveUp`` with the reason and the attempts made.

    outcome                                   decision
    a status in retry_on_status               Retry: Retry-After if it is a hint, else the backoff
      ... with Retry-After > max_retry_after   GiveUp at once ("rate limited for 3600 s ...")
    another status (a 404, a bad body)        GiveUp at once
    a transport failure (transport.py)        Retry, except tls and unsupported: GiveUp at once
    a final outcome (not JSON, too large)     GiveUp at once
    attempts used up                          GiveUp ("... (gave up after 3 attempts)")

tenacity is not used: the loop is a dozen lines, its decision table is this module, and tenacity cost
about 0.2 ms a call on the hot path (measured in issue 3) for nothing the loop needs.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Literal, Protocol, TypeVar

T = TypeVar("T")
# How an attempt failed without an HTTP answer; ``transport_errors.py`` maps the transport's errors to these.
TransportKind = Literal[
    "timeout", "refused", "dns", "tls", "closed", "reset", "connect", "proxy", "protocol", "unsupported"
]
NOT_RETRIED: frozenset[TransportKind] = frozenset({"tls", "unsupported"})


class Policy(Protocol):
    """What ``decide`` reads: the config's ``retry`` block (``models.Retry``) or a ``RetryPolicy``."""

    @property
    def max_attempts(self) -> int: ...
    @property
    def backoff(self) -> Literal["exponential", "fixed"]: ...
    @property
    def initial_delay_seconds(self) -> float: ...
    @property
    def max_delay_seconds(self) -> float: ...
    @property
    def retry_on_status(self) -> Collection[int]: ...
    @property
    def max_retry_after_seconds(self) -> float: ...


@dataclass(frozen=True)
class RetryPolicy:
    """A policy in code, for the calls that have no ``retry`` block (events, the DAPR start-up sync).

    ``jitter=False`` makes the exponential backoff exact (first, 2 x first, ... capped)."""

    max_attempts: int = 3
    backoff: Literal["exponential", "fixed"] = "exponential"
    initial_delay_seconds: float = 0.5
    max_delay_seconds: float = 60.0
    retry_on_status: Collection[int] = (408, 425, 429, 500, 502, 503, 504)
    max_retry_after_seconds: float = 300.0
    jitter: bool = True


@dataclass(frozen=True)
class Outcome:
    """How one attempt failed: an HTTP status (with its headers) or a transport failure, and a reason."""

    reason: str
    status: int | None = None
    headers: Mapping[str, str] = field(default_factory=dict)  # httpx.Headers, or lower-case names
    transport: TransportKind | None = None
    final: bool = False  # another try cannot fix it (a body that is not JSON, a redirect off-origin)
    wait: float | None = None  # a hint the caller read itself (a rate limit's reset): the later one wins


@dataclass(frozen=True)
class Retry:
    delay: float


@dataclass(frozen=True)
class GiveUp:
    reason: str


class AttemptFailed(Exception):
    """Raised by an attempt for the loop to decide on."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome.reason)
        self.outcome = outcome


class GaveUp(Exception):
    """The loop's end: ``reason`` (with the attempts when they ran out) and ``attempts`` made."""

    def __init__(self, reason: str, attempts: int, outcome: Outcome) -> None:
        super().__init__(reason)
        self.reason, self.attempts, self.outcome = reason, attempts, outcome


def decide(
    policy: Policy, outcome: Outcome, attempt: int, rng: Callable[[], float] = random.random
) -> Retry | GiveUp:
    """After failed attempt number ``attempt`` (1-based): wait and try again, or give up. Pure."""
    hint: float | None = outcome.wait
    if outcome.final:
        return GiveUp(outcome.reason)
    if outcome.status is not None:
        if outcome.status not in policy.retry_on_status:
            return GiveUp(outcome.reason)
        said = retry_after_seconds(outcome.headers.get("retry-after"))
        hint = max(h for h in (said, hint, 0.0) if h is not None) or None
    if hint is not None and hint > policy.max_retry_after_seconds:
        return GiveUp(
            f"rate limited for {hint:.0f} s (Retry-After above max_retry_after_seconds="
            f"{policy.max_retry_after_seconds:g})"
        )
    if outcome.status is None and outcome.transport in NOT_RETRIED:
        return GiveUp(outcome.reason)
    if attempt >= policy.max_attempts:
        return GiveUp(f"{outcome.reason} (gave up after {attempt} attempts)")
    return Retry(backoff_delay(policy, attempt, hint, rng))


async def call_with_retries(
    attempt: Callable[[], Awaitable[T]],
    policy: Policy,
    *,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    rng: Callable[[], float] = random.random,
    on_retry: Callable[[int, float, Outcome], None] | None = None,
) -> T:
    """``attempt()`` until it returns, or ``decide`` gives up (``GaveUp``)."""
    number = 1
    while True:
        try:
            return await attempt()
        except AttemptFailed as failed:
            decision = decide(policy, failed.outcome, number, rng)
            if isinstance(decision, GiveUp):
                raise GaveUp(decision.reason, number, failed.outcome) from None
            if on_retry is not None:
                on_retry(number, decision.delay, failed.outcome)
            await sleep(decision.delay)
            number += 1


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


def backoff_delay(
    policy: Policy,
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
    if not getattr(policy, "jitter", True):
        return base
    return base / 2 + rng() * base / 2
