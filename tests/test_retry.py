"""The retry decision as a table (pure: no sleeps), and the one loop that obeys it."""

from __future__ import annotations

from typing import Any

import pytest

from pullctl.config.models import Retry as RetryConfig
from pullctl.retry import (
    AttemptFailed,
    GaveUp,
    GiveUp,
    Outcome,
    Retry,
    RetryPolicy,
    backoff_delay,
    call_with_retries,
    decide,
)

POLICY = RetryConfig(max_attempts=3, initial_delay_seconds=1, max_delay_seconds=30)
HALF = lambda: 0.5  # noqa: E731  (the jitter draw: half of the random half)


@pytest.mark.parametrize(
    ("outcome", "attempt", "decision"),
    [
        # a retried status: the backoff (1 s base, equal jitter at 0.5 -> 0.75 s), then 1.5 s, then give up
        (Outcome("HTTP 503", status=503), 1, Retry(0.75)),
        (Outcome("HTTP 503", status=503), 2, Retry(1.5)),
        (Outcome("HTTP 503", status=503), 3, GiveUp("HTTP 503 (gave up after 3 attempts)")),
        # Retry-After is obeyed (capped at max_delay_seconds); 0 is no hint
        (Outcome("HTTP 429", status=429, headers={"retry-after": "7"}), 1, Retry(7.0)),
        (Outcome("HTTP 429", status=429, headers={"retry-after": "120"}), 1, Retry(30.0)),
        (Outcome("HTTP 429", status=429, headers={"retry-after": "0"}), 1, Retry(0.75)),
        # ... unless it is beyond max_retry_after_seconds: give up at once, even on the first attempt
        (
            Outcome("HTTP 429", status=429, headers={"retry-after": "3600"}),
            1,
            GiveUp("rate limited for 3600 s (Retry-After above max_retry_after_seconds=300)"),
        ),
        # a status not in retry_on_status is final
        (
            Outcome("HTTP 404 Not Found: no such region", status=404),
            1,
            GiveUp("HTTP 404 Not Found: no such region"),
        ),
        (Outcome("HTTP 401", status=401), 1, GiveUp("HTTP 401")),
        # transport failures are retried, but for TLS and an unsendable URL
        (Outcome("connection refused by h:1", transport="refused"), 1, Retry(0.75)),
        (Outcome("timed out", transport="timeout"), 2, Retry(1.5)),
        (Outcome("closed", transport="closed"), 3, GiveUp("closed (gave up after 3 attempts)")),
        (Outcome("dns", transport="dns"), 1, Retry(0.75)),
        (Outcome("TLS handshake failed", transport="tls"), 1, GiveUp("TLS handshake failed")),
        (Outcome("cannot send", transport="unsupported"), 1, GiveUp("cannot send")),
        # a final outcome (a body that is not JSON) is never retried
        (Outcome("response is not JSON", status=200, final=True), 1, GiveUp("response is not JSON")),
    ],
)
def test_decision_table(outcome: Outcome, attempt: int, decision: Retry | GiveUp) -> None:
    assert decide(POLICY, outcome, attempt, HALF) == decision


def test_retry_on_status_is_the_policys() -> None:
    policy = RetryConfig(retry_on_status=[403])
    assert decide(policy, Outcome("HTTP 403", status=403), 1, HALF) == Retry(0.75)
    assert decide(policy, Outcome("HTTP 503", status=503), 1, HALF) == GiveUp("HTTP 503")


def test_backoff_kinds() -> None:
    exp = RetryConfig(initial_delay_seconds=2, max_delay_seconds=10)
    assert [backoff_delay(exp, n, rng=lambda: 1.0) for n in (1, 2, 3, 4)] == [2, 4, 8, 10]
    assert [backoff_delay(exp, n, rng=lambda: 0.0) for n in (1, 2, 3)] == [1, 2, 4]
    fixed = RetryConfig(backoff="fixed", initial_delay_seconds=3)
    assert backoff_delay(fixed, 5) == 3
    exact = RetryPolicy(initial_delay_seconds=1, max_delay_seconds=15, jitter=False)
    assert [backoff_delay(exact, n) for n in range(1, 7)] == [1, 2, 4, 8, 15, 15]


class Script:
    """An attempt that fails with the given outcomes, then returns ``"done"``."""

    def __init__(self, *outcomes: Outcome) -> None:
        self.outcomes = list(outcomes)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.outcomes:
            raise AttemptFailed(self.outcomes.pop(0))
        return "done"


@pytest.mark.anyio
async def test_the_loop_sleeps_as_decided_and_reports_each_retry() -> None:
    sleeps: list[float] = []
    retries: list[tuple[int, float, str]] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    attempt = Script(
        Outcome("HTTP 503", status=503), Outcome("HTTP 429", status=429, headers={"retry-after": "4"})
    )
    result = await call_with_retries(
        attempt, POLICY, sleep=sleep, rng=HALF, on_retry=lambda n, d, o: retries.append((n, d, o.reason))
    )
    assert (result, attempt.calls, sleeps) == ("done", 3, [0.75, 4.0])
    assert retries == [(1, 0.75, "HTTP 503"), (2, 4.0, "HTTP 429")]


@pytest.mark.anyio
async def test_the_loop_gives_up_with_the_reason_and_the_attempts() -> None:
    async def sleep(_seconds: float) -> None: ...

    attempt = Script(*[Outcome("connection refused by h:1", transport="refused")] * 5)
    with pytest.raises(GaveUp) as gave_up:
        await call_with_retries(attempt, POLICY, sleep=sleep, rng=HALF)
    assert (gave_up.value.reason, gave_up.value.attempts) == (
        "connection refused by h:1 (gave up after 3 attempts)",
        3,
    )
    assert gave_up.value.outcome.transport == "refused"


@pytest.mark.anyio
async def test_other_exceptions_pass_through_the_loop_untouched() -> None:
    async def boom() -> Any:
        raise KeyError("a bug, not an outcome")

    with pytest.raises(KeyError):
        await call_with_retries(boom, POLICY)


def test_a_wait_the_caller_read_wins_when_it_is_later() -> None:
    # a rate limit's reset (read by the fetcher) against Retry-After: the later one, capped at max_delay_seconds
    late = Outcome("HTTP 429", status=429, headers={"retry-after": "2"}, wait=9.0)
    assert decide(POLICY, late, 1, HALF) == Retry(9.0)
    assert decide(POLICY, Outcome("body says retry", wait=3.0), 1, HALF) == Retry(3.0)  # a retry action
    too_far = Outcome("body says retry", wait=7200.0)
    assert decide(POLICY, too_far, 1, HALF) == GiveUp(
        "rate limited for 7200 s (Retry-After above max_retry_after_seconds=300)"
    )
