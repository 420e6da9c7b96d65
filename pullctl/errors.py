"""The pullctl error tree.

Every error a user can cause or meet is a ``PullctlError``; anything else that escapes is a bug.
The CLI catches this family in one place, prints ``error: <message>`` to stderr and exits with
the error's ``exit_code`` (DESIGN §3). Third-party errors (httpx, pymongo, kubernetes, pydantic)
are translated into this tree in the adapter that calls the library, and secrets are masked
before a message is built.

    PullctlError                        exit 1 unless said otherwise
    ├── ConfigError                     exit 2: a config (or several) is invalid; carries located issues
    ├── UsageError                      exit 2: bad flags or arguments
    │   └── OptionsError                a library refused an option's value, naming its field (the
    │                                   CLI says the flag instead)
    ├── IterationError                  the iteration list could not be resolved (MCP, static list)
    ├── SecretError                     a secret could not be resolved
    ├── AuthError                       no token: the token endpoint or login refused or failed, or a
    │                                   rotating refresh token could not be kept (the run fails)
    ├── FetchError                      one item could not be fetched (recorded, the run goes on)
    │   └── ItemSkippedError            a response_actions rule skips the item: counted, not a failure
    ├── StoreError                      the store is unreachable or refused a write
    ├── ClusterError                    the Kubernetes API refused or could not be reached
    └── DaprError                       the DAPR sidecar refused or could not be reached

An event that cannot be published is no error of its own: its document stays pending for the next run
(``pipeline/events.py``), and the run record says so.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


class PullctlError(Exception):
    """Root of every error pullctl reports to a user."""

    exit_code: int = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True, order=True)
class Issue:
    """One located problem in a config file: ``file:line:col: field.path: message``."""

    file: str
    line: int
    column: int
    path: str
    message: str
    severity: str = "error"  # "error" | "warning"

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class ConfigError(PullctlError):
    """One or more config files are invalid; ``issues`` holds every located problem."""

    exit_code = 2

    def __init__(self, message: str, issues: list[Issue] | None = None) -> None:
        self.issues = list(issues or [])
        if self.issues and not message:
            message = "\n".join(str(i) for i in self.issues)
        super().__init__(message)


class UsageError(PullctlError):
    exit_code = 2


class OptionsError(UsageError):
    """A library refused the value of an option. ``problems`` holds ``(field, detail)`` pairs and the message
    names the fields (``shard '5/4': expected ...``); a front end names its own spelling of each field
    instead (``spelled``: the CLI's flags)."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__(self.spelled({}))

    def spelled(self, names: Mapping[str, str]) -> str:
        """The message with each field as ``names`` spells it (a field it lacks keeps its own name)."""
        return "; ".join(f"{names.get(name, name)} {detail}" for name, detail in self.problems)


class IterationError(PullctlError):
    pass


class SecretError(PullctlError):
    pass


class AuthError(PullctlError):
    """The run's token could not be obtained or kept (run/auth.py): every item would fail the same way."""


class FetchError(PullctlError):
    """One item failed; ``attempts`` says how many requests were made for it, ``status`` the HTTP status of
    the last answer when one failed it (an expired sync token's 410/412)."""

    def __init__(self, message: str, attempts: int = 1, status: int | None = None) -> None:
        super().__init__(message)
        self.attempts = attempts
        self.status = status


class ItemSkippedError(FetchError):
    """A ``response_actions`` rule says to skip the item (a 404 for one private repository)."""


class StoreError(PullctlError):
    pass


class ClusterError(PullctlError):
    """The Kubernetes API refused a call or could not be reached; ``code`` and ``reason`` come from the
    ``Status`` it answered (``403``/``Forbidden``, ``409``/``Conflict``, ...), None when no answer came."""

    def __init__(self, message: str, code: int | None = None, reason: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason


class DaprError(PullctlError):
    """The DAPR sidecar refused a call; ``status`` and ``error_code`` come from its answer."""

    def __init__(self, message: str, status: int | None = None, error_code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code
