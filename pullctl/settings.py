"""Flags and environment -> a ``Settings`` value (DESIGN §4). Flags win over the environment.

``Settings`` holds every variable pullctl reads, typed and checked: a value outside its allowed set is a
``UsageError`` naming the variable and the allowed values (``PULLCTL_LOG_FORMAT=jsno`` is not silently
JSON). Nothing else in pullctl reads ``os.environ`` (but the CLI's ``COLUMNS``, the terminal's width); the
standard variables of the libraries pullctl hands work to (``OTEL_EXPORTER_OTLP_*`` beyond the endpoint,
``SSL_CERT_FILE``) stay theirs.

``Settings`` is frozen and cheap: each command builds its own with ``Settings.from_env(**its flags)``, and the
CLI's entry point builds one more for ``PULLCTL_LOG_FORMAT`` before any command runs. ``from_env`` reads
``os.environ`` at the call (or the mapping it is given, as the demo and tests do), so values never go stale.
A plain frozen dataclass, not pydantic-settings: it is built before every command (``pullctl --help``
included, which must start in under 0.3 s), from a mapping as often as from the process environment, and
two of its families have names only known at run time (``PULLCTL_SECRET_<STORE>_<KEY>``,
``PULLCTL_MCP_URL_<APP_ID>``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal, cast, get_args

from pullctl.errors import UsageError

DEFAULT_CONFIG = "config/source-configs"
DEFAULT_STORE = "sqlite:///.pullctl/pullctl.db"
DEFAULT_DAPR_ENDPOINT = "http://127.0.0.1:3500"
DAPR_VARIABLES = ("DAPR_HTTP_ENDPOINT", "DAPR_HTTP_PORT", "DAPR_API_TOKEN")  # set where a sidecar runs
LOG_FORMATS = ("auto", "json", "text")
Trigger = Literal["schedule", "dapr", "manual", "backfill"]  # what started a run (``pull_runs.trigger``)
TRIGGERS: tuple[Trigger, ...] = get_args(Trigger)
SECRET_PREFIX = "PULLCTL_SECRET_"
MCP_URL_PREFIX = "PULLCTL_MCP_URL_"
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("", "0", "false", "no", "off")


def env_name(*parts: str) -> str:
    """``PULLCTL_SECRET_<STORE>_<KEY>``-style names: upper-cased, every non-alphanumeric as ``_``."""
    return "_".join(re.sub(r"[^A-Za-z0-9]", "_", p).upper() for p in parts)


@dataclass(frozen=True)
class Settings:
    config: str = DEFAULT_CONFIG  # PULLCTL_CONFIG
    store: str = DEFAULT_STORE  # PULLCTL_STORE
    mongodb_database: str = "pullctl"  # PULLCTL_MONGODB_DATABASE
    dapr_endpoint: str = DEFAULT_DAPR_ENDPOINT  # DAPR_HTTP_ENDPOINT, else DAPR_HTTP_PORT on 127.0.0.1
    dapr_api_token: str | None = field(default=None, repr=False)  # DAPR_API_TOKEN
    dapr_configured: bool = (
        False  # one of DAPR_HTTP_ENDPOINT, DAPR_HTTP_PORT, DAPR_API_TOKEN is set: a sidecar
    )
    events: str = "none"  # PULLCTL_EVENTS
    log_format: str = "auto"  # PULLCTL_LOG_FORMAT: auto | json | text
    trigger: Trigger = "manual"  # PULLCTL_TRIGGER (the rendered CronJob sets schedule)
    dapr_shutdown: bool = False  # PULLCTL_DAPR_SHUTDOWN: ask the sidecar to stop after the run (a Job's pod)
    job_completion_index: str | None = None  # JOB_COMPLETION_INDEX: this pod's shard (an Indexed Job)
    app_api_token: str | None = field(default=None, repr=False)  # APP_API_TOKEN: what serve's callers send
    state_key: str | None = field(default=None, repr=False)  # PULLCTL_STATE_KEY: seals stored credentials
    otel_endpoint: str | None = None  # OTEL_EXPORTER_OTLP_ENDPOINT: run metrics go there when set
    kubeconfig: str | None = None  # KUBECONFIG
    in_cluster: bool = False  # KUBERNETES_SERVICE_HOST is set: a pod's service account
    # PULLCTL_SECRET_<STORE>_<KEY> and PULLCTL_MCP_URL_<APP_ID>, by full variable name
    secrets: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)
    mcp_urls: Mapping[str, str] = field(default_factory=dict, compare=False)
    # HTTP(S)_PROXY, ALL_PROXY, NO_PROXY (any case), for the run's transport
    proxies: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        _allowed("PULLCTL_LOG_FORMAT", self.log_format, LOG_FORMATS)
        _allowed("PULLCTL_TRIGGER", self.trigger, TRIGGERS)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **flags: Any) -> Settings:
        env = dict(os.environ if environ is None else environ)
        endpoint = env.get("DAPR_HTTP_ENDPOINT") or (
            f"http://127.0.0.1:{env['DAPR_HTTP_PORT']}"
            if env.get("DAPR_HTTP_PORT")
            else DEFAULT_DAPR_ENDPOINT
        )
        settings = cls(
            config=env.get("PULLCTL_CONFIG") or DEFAULT_CONFIG,
            store=env.get("PULLCTL_STORE") or DEFAULT_STORE,
            mongodb_database=env.get("PULLCTL_MONGODB_DATABASE") or "pullctl",
            dapr_endpoint=endpoint.rstrip("/"),
            dapr_api_token=env.get("DAPR_API_TOKEN") or None,
            dapr_configured=any(env.get(name) for name in DAPR_VARIABLES),
            events=env.get("PULLCTL_EVENTS") or "none",
            log_format=(env.get("PULLCTL_LOG_FORMAT") or "auto").lower(),
            trigger=cast(Trigger, env.get("PULLCTL_TRIGGER") or "manual"),  # checked in __post_init__
            dapr_shutdown=_flag("PULLCTL_DAPR_SHUTDOWN", env.get("PULLCTL_DAPR_SHUTDOWN", "")),
            job_completion_index=env.get("JOB_COMPLETION_INDEX") or None,
            app_api_token=env.get("APP_API_TOKEN") or None,
            state_key=env.get("PULLCTL_STATE_KEY") or None,
            otel_endpoint=env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or None,
            kubeconfig=env.get("KUBECONFIG") or None,
            in_cluster=bool(env.get("KUBERNETES_SERVICE_HOST")),
            secrets={k: v for k, v in env.items() if k.startswith(SECRET_PREFIX)},
            mcp_urls={k: v for k, v in env.items() if k.startswith(MCP_URL_PREFIX)},
            proxies={k: v for k, v in env.items() if k.lower().endswith("_proxy") and v},
        )
        return replace(settings, **{k: v for k, v in flags.items() if v is not None})

    def secret_from_env(self, store: str, key: str) -> str | None:
        return self.secrets.get(env_name("PULLCTL_SECRET", store, key))

    def mcp_url_for(self, app_id: str) -> str | None:
        return self.mcp_urls.get(env_name("PULLCTL_MCP_URL", app_id))


def _allowed(variable: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise UsageError(f"{variable}={value!r} is not one of: {', '.join(allowed)}")


def _flag(variable: str, value: str) -> bool:
    text = value.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise UsageError(f"{variable}={value!r} is not a yes/no value: use 1/true/yes or 0/false/no")
