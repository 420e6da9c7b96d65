"""Flags and environment -> a ``Settings`` value (DESIGN §4). Flags win over the environment.

``Settings`` is frozen and cheap: each command builds its own with ``Settings.from_env(**its flags)``, and the
CLI's entry point builds one more for ``PULLCTL_LOG_FORMAT`` before any command runs. ``from_env`` reads
``os.environ`` at the call (or the mapping it is given, as the demo does), so values never go stale.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

DEFAULT_CONFIG = "config/source-configs"
DEFAULT_STORE = "sqlite:///.pullctl/pullctl.db"


def env_name(*parts: str) -> str:
    """``PULLCTL_SECRET_<STORE>_<KEY>``-style names: upper-cased, every non-alphanumeric as ``_``."""
    return "_".join(re.sub(r"[^A-Za-z0-9]", "_", p).upper() for p in parts)


@dataclass(frozen=True)
class Settings:
    config: str = DEFAULT_CONFIG
    store: str = DEFAULT_STORE
    mongodb_database: str = "pullctl"
    dapr_endpoint: str = "http://127.0.0.1:3500"
    dapr_api_token: str | None = None
    events: str = "none"
    log_format: str = "auto"
    environ: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **flags: Any) -> Settings:
        env = dict(os.environ if environ is None else environ)
        endpoint = env.get("DAPR_HTTP_ENDPOINT") or (
            f"http://127.0.0.1:{env['DAPR_HTTP_PORT']}"
            if env.get("DAPR_HTTP_PORT")
            else "http://127.0.0.1:3500"
        )
        settings = cls(
            config=env.get("PULLCTL_CONFIG") or DEFAULT_CONFIG,
            store=env.get("PULLCTL_STORE") or DEFAULT_STORE,
            mongodb_database=env.get("PULLCTL_MONGODB_DATABASE") or "pullctl",
            dapr_endpoint=endpoint.rstrip("/"),
            dapr_api_token=env.get("DAPR_API_TOKEN") or None,
            events=env.get("PULLCTL_EVENTS") or "none",
            log_format=env.get("PULLCTL_LOG_FORMAT") or "auto",
            environ=env,
        )
        return replace(settings, **{k: v for k, v in flags.items() if v is not None})

    def secret_from_env(self, store: str, key: str) -> str | None:
        return self.environ.get(env_name("PULLCTL_SECRET", store, key))

    def mcp_url_for(self, app_id: str) -> str | None:
        return self.environ.get(env_name("PULLCTL_MCP_URL", app_id))
