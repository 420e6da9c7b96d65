"""Domain events for new documents: DAPR pub/sub, an HTTP webhook, or none (DESIGN §4, §4a, §5).

The store is the outbox: a new document is stored with ``event_status: pending`` and marked ``sent``
once its event is acknowledged. A sink publishes a batch and says which events were acknowledged;
a publish that fails after its retries leaves the document pending for the next run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Protocol

import httpx

from pullctl.config.models import SourceConfig
from pullctl.errors import DaprError, UsageError
from pullctl.pipeline.documents import Document
from pullctl.redact import mask_url, url_redactor
from pullctl.retry import AttemptFailed, GaveUp, Outcome, RetryPolicy, TransportKind, call_with_retries
from pullctl.settings import Settings
from pullctl.transport_errors import host_of, transport_failure

if TYPE_CHECKING:
    from pullctl.dapr import DaprClient

WEBHOOK_TIMEOUT = 10.0


class EventSink(Protocol):
    name: str

    async def publish(self, docs: list[Document]) -> list[str | None]:
        """Publish one event per document; per document None = acknowledged, else the failure reason."""
        ...

    async def aclose(self) -> None: ...


class NoEvents:
    name = "none"

    async def publish(self, docs: list[Document]) -> list[str | None]:
        return [None] * len(docs)

    async def aclose(self) -> None:
        return None


# Three attempts, 0.5 s then 1 s apart: a sink that stays down leaves the event pending for the next run.
EVENT_RETRY = RetryPolicy(max_attempts=3, initial_delay_seconds=0.5, max_delay_seconds=5.0, jitter=False)


async def _deliver(
    send: Callable[[], Awaitable[None]], sleep: Callable[[float], Awaitable[None]], policy: RetryPolicy
) -> str | None:
    """``send`` under the retry loop; None when acknowledged, else why it was given up."""
    try:
        await call_with_retries(send, policy, sleep=sleep)
    except GaveUp as exc:
        return exc.reason
    return None


class DaprPubSub:
    def __init__(
        self,
        settings: Settings,
        pubsub: str,
        topic: str,
        policy: RetryPolicy = EVENT_RETRY,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        dapr: DaprClient | None = None,
    ) -> None:
        """``dapr``: a client to borrow (``serve``'s one), else the sink opens its own and closes it."""
        from pullctl.dapr import DaprClient

        self.name = f"dapr://{pubsub}/{topic}"
        self.pubsub, self.topic = pubsub, topic
        self._own = dapr is None
        self._dapr = dapr or DaprClient.from_settings(settings)
        self._policy, self._sleep = policy, sleep

    async def publish(self, docs: list[Document]) -> list[str | None]:
        out: list[str | None] = []
        for doc in docs:

            async def send(doc: Document = doc) -> None:
                try:
                    await self._dapr.publish(self.pubsub, self.topic, doc.event(), doc.id)
                except DaprError as exc:  # no status: the sidecar did not answer
                    transport: TransportKind | None = "connect" if exc.status is None else None
                    raise AttemptFailed(
                        Outcome(exc.message, status=exc.status, transport=transport)
                    ) from None

            out.append(await _deliver(send, self._sleep, self._policy))
        return out

    async def aclose(self) -> None:
        if self._own:
            await self._dapr.aclose()


class Webhook:
    """POSTs each event to ``url``. Credentials in the URL (``https://user:token@host/``) go to the webhook as
    Basic auth and nowhere else: ``name`` and every failure reason carry the URL masked."""

    def __init__(
        self,
        url: str,
        policy: RetryPolicy = EVENT_RETRY,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.name = mask_url(url)
        self.url = url
        self._redact = url_redactor(url)
        self._client = httpx.AsyncClient(timeout=WEBHOOK_TIMEOUT)
        self._policy, self._sleep = policy, sleep

    async def publish(self, docs: list[Document]) -> list[str | None]:
        out: list[str | None] = []
        for doc in docs:

            async def send(doc: Document = doc) -> None:
                try:
                    response = await self._client.post(
                        self.url, json=doc.event(), headers={"Idempotency-Key": doc.id, "ce-id": doc.id}
                    )
                except httpx.HTTPError as exc:  # httpx may quote the URL: its text, masked
                    failure = transport_failure(exc, host_of(self.url), WEBHOOK_TIMEOUT)
                    raise AttemptFailed(
                        Outcome(self._redact(failure.reason), transport=failure.kind)
                    ) from None
                if response.status_code >= 300:
                    reason = f"webhook {self.name} answered HTTP {response.status_code}"
                    raise AttemptFailed(
                        Outcome(reason, status=response.status_code, headers=response.headers)
                    )

            out.append(await _deliver(send, self._sleep, self._policy))
        return out

    async def aclose(self) -> None:
        await self._client.aclose()


def event_target(config: SourceConfig, settings: Settings) -> str:
    """``PULLCTL_EVENTS``, with the source's ``events.pubsub`` / ``events.topic`` overriding its parts."""
    target = settings.events
    ev = config.ingestion.events
    if ev.pubsub or ev.topic:
        pubsub, topic = None, None
        if target.startswith("dapr://"):
            pubsub, _, topic = target.removeprefix("dapr://").partition("/")
        pubsub, topic = ev.pubsub or pubsub, ev.topic or topic
        if not pubsub or not topic:
            raise UsageError(
                f"source '{config.source_id}' sets events.{'topic' if ev.topic else 'pubsub'} but no"
                f" {'pubsub' if ev.topic else 'topic'}: set both, or PULLCTL_EVENTS=dapr://<pubsub>/<topic>"
            )
        return f"dapr://{pubsub}/{topic}"
    return target


def open_sink(config: SourceConfig, settings: Settings, dapr: DaprClient | None = None) -> EventSink:
    target = event_target(config, settings)
    if target in ("", "none"):
        return NoEvents()
    if target.startswith("dapr://"):
        pubsub, _, topic = target.removeprefix("dapr://").partition("/")
        if not pubsub or not topic or "/" in topic:
            raise UsageError(f"PULLCTL_EVENTS '{target}': expected dapr://<pubsub>/<topic>")
        return DaprPubSub(settings, pubsub, topic, dapr=dapr)
    if target.startswith(("http://", "https://")):
        return Webhook(target)
    raise UsageError(
        f"PULLCTL_EVENTS '{target}': expected dapr://<pubsub>/<topic>, an http(s):// URL, or none"
    )
