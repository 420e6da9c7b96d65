"""A Kubernetes API server emulator for the test suite: a Starlette app served on loopback.

It answers the REST calls ``pullctl sync`` makes closely enough that the official ``kubernetes`` client works
against it unmodified, through a kubeconfig it writes (``KubeEmulator.write_kubeconfig``).

Resources (namespaced): ``batch/v1`` CronJobs and Jobs, ``v1`` ConfigMaps, with get, list (``labelSelector``,
``fieldSelector``, ``limit``/``continue``), create, update (PUT), patch (server-side apply, merge, strategic merge,
JSON patch) and delete (``propagationPolicy``, ``dryRun``). Discovery: ``/version``, ``/api``, ``/apis``,
``/api/v1``, ``/apis/batch``, ``/apis/batch/v1``.

What follows the real API server (kubernetes/kubernetes ``staging/src/k8s.io/apiserver`` and ``apimachinery``):

- Every error is a ``Status`` with the real message, reason, details and code (``apimachinery/pkg/api/errors``).
- A missing or wrong bearer token is 401 ``Unauthorized`` on every path (anonymous auth disabled).
- ``deny()`` gives the RBAC filter's 403 (``responsewriters.forbiddenMessage``); an apply that would create an
  object also needs ``create`` (``handlers/patch.go`` ``withAuthorization``), whose 403 carries RBAC's empty reason.
- ``fail(verb, resource, status)`` makes authorized requests fail as the server does when its storage or a filter
  gives up (``apimachinery/pkg/api/errors``): 409 ``Conflict`` (the optimistic-lock message), 500 ``InternalError``
  ("Internal error occurred: etcdserver: request timed out"), 503 ``ServiceUnavailable``, 504 ``Timeout`` (the
  timeout filter's "request did not complete within requested timeout - context deadline exceeded"). ``times``
  bounds how many requests fail (None: all); ``message`` replaces the default cause. Nothing is written.
- Server-side apply (``application/apply-patch+yaml``): ``fieldManager`` is required (422 ``PatchOptions`` Invalid),
  ``force`` on a non-apply patch is 422, apiVersion/kind must match the endpoint (400 ``invalid object type``),
  the URL name must match ``metadata.name`` (400), ``metadata.managedFields`` must be absent (400). Field
  ownership follows structured-merge-diff: the applied fields become the manager's set (``managedFields``,
  FieldsV1), fields the manager applied before and no longer applies are removed unless another manager owns
  them, values owned by another manager conflict (409, ``conflict with "m" using batch/v1: .spec.x``) unless
  ``force=true``. Keyed lists (containers, env, volumes, ports, ...) merge by key, others are atomic.
  201 when the apply created the object, 200 otherwise; ``resourceVersion`` changes only when the stored object
  changes (managedFields times included), ``generation`` when ``spec`` changes (CronJob, Job).
- Defaults are applied like the apiserver's defaulters (CronJob ``concurrencyPolicy: Allow``, history limits,
  ``suspend: false``; pod template ``dnsPolicy``, ``restartPolicy``, ``terminationGracePeriodSeconds``,
  container ``imagePullPolicy``, ``terminationMessagePath``/``Policy``, port protocol, resource quantities
  rounded up to milli-units and written in canonical form, e.g. ``0.5`` -> ``500m``, ``2048Mi`` -> ``2Gi``).
- Validation returns 422 ``Invalid`` for the common CronJob/Job/ConfigMap mistakes (schedule syntax, TZ in the
  schedule, unknown ``timeZone``, names longer than 52 characters, job ``restartPolicy``, missing containers,
  labels, config keys, ``immutable`` ConfigMaps).
- Delete: options come from the body when there is one, else from the query (``handlers/delete.go``).
  ``Background`` (the default) answers a ``Status`` Success whose details hold name, group, resource and uid;
  ``Foreground``/``Orphan`` answer the object marked for deletion with the GC finalizer. The emulator plays the
  garbage collector at once: dependents (Jobs owned by the CronJob) go too, or lose their owner reference.

Deliberate simplifications: no watch, no unknown-field detection, no status subresource, the garbage
collector acts synchronously, and ``Update`` ownership (create, PUT, merge patch) is computed on leaf fields.
"""

from __future__ import annotations

import base64
import copy
import json
import math
import random
import re
import threading
import uuid
import zoneinfo
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
import yaml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from pullctl.asgi import BackgroundServer

Obj = dict[str, Any]
FieldPath = tuple[str, ...]

DEFAULT_TOKEN = "emulator-token"
DEFAULT_USER = "system:serviceaccount:ci:pullctl"
SERVER_VERSION = "v1.33.0"

APPLY_PATCH = "application/apply-patch+yaml"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"
PATCH_TYPES = (JSON_PATCH, MERGE_PATCH, STRATEGIC_PATCH, APPLY_PATCH)  # order of the apiserver's installer

# ---------------------------------------------------------------------------------------------------------------
# Status errors (k8s.io/apimachinery/pkg/api/errors)
# ---------------------------------------------------------------------------------------------------------------


class ApiError(Exception):
    """An error the server answers as a ``Status`` object."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        details: Obj | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
        self.headers = headers or {}

    def status(self) -> Obj:
        body: Obj = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
        }
        if self.details is not None:
            body["details"] = self.details
        body["code"] = self.code
        return body


def _details(group: str, resource: str, name: str = "", **extra: Any) -> Obj:
    out: Obj = {}
    if name:
        out["name"] = name
    if group:
        out["group"] = group
    if resource:
        out["kind"] = resource
    out.update(extra)
    return out


def _qualified(group: str, resource: str) -> str:
    return f"{resource}.{group}" if group else resource


def _go_quote(value: str) -> str:
    """Go's ``%q`` for the strings that occur here."""
    return json.dumps(value, ensure_ascii=False)


def not_found(group: str, resource: str, name: str) -> ApiError:
    return ApiError(
        404,
        "NotFound",
        f"{_qualified(group, resource)} {_go_quote(name)} not found",
        _details(group, resource, name),
    )


def already_exists(group: str, resource: str, name: str) -> ApiError:
    return ApiError(
        409,
        "AlreadyExists",
        f"{_qualified(group, resource)} {_go_quote(name)} already exists",
        _details(group, resource, name),
    )


def forbidden(group: str, resource: str, name: str, reason: str) -> ApiError:
    qualified = _qualified(group, resource)
    message = (
        f"{qualified} {_go_quote(name)} is forbidden: {reason}"
        if name
        else f"{qualified} is forbidden: {reason}"
    )
    return ApiError(403, "Forbidden", message, _details(group, resource, name))


def conflict(group: str, resource: str, name: str, reason: str) -> ApiError:
    return ApiError(
        409,
        "Conflict",
        f"Operation cannot be fulfilled on {_qualified(group, resource)} {_go_quote(name)}: {reason}",
        _details(group, resource, name),
    )


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def unauthorized() -> ApiError:
    return ApiError(401, "Unauthorized", "Unauthorized")


def resource_not_found() -> ApiError:
    return ApiError(404, "NotFound", "the server could not find the requested resource", {})


def method_not_supported(group: str, resource: str, action: str) -> ApiError:
    return ApiError(
        405,
        "MethodNotAllowed",
        f"{action} is not supported on resources of kind {_go_quote(_qualified(group, resource))}",
        _details(group, resource),
    )


@dataclass(frozen=True)
class FieldError:
    """A ``field.Error``: ``<field>: <Type>[: <value>][: <detail>]``."""

    type: str  # Required | Invalid | NotSupported | Forbidden | Duplicate | TooLong
    field: str
    value: Any = None
    detail: str = ""

    _TYPES = {
        "Required": ("FieldValueRequired", "Required value"),
        "Invalid": ("FieldValueInvalid", "Invalid value"),
        "NotSupported": ("FieldValueNotSupported", "Unsupported value"),
        "Forbidden": ("FieldValueForbidden", "Forbidden"),
        "Duplicate": ("FieldValueDuplicate", "Duplicate value"),
        "TooLong": ("FieldValueTooLong", "Too long"),
    }

    def body(self) -> str:
        text = self._TYPES[self.type][1]
        if self.type not in ("Required", "Forbidden", "TooLong"):
            text += ": " + _go_value(self.value)
        if self.detail:
            text += ": " + self.detail
        return text

    def __str__(self) -> str:
        return f"{self.field}: {self.body()}" if self.field else self.body()

    def cause(self) -> Obj:
        return {"reason": self._TYPES[self.type][0], "message": self.body(), "field": self.field}


def _go_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return _go_quote(value)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return "[]string{" + ", ".join(_go_quote(v) for v in value) + "}"
    return json.dumps(value)


def _supported(values: list[str]) -> str:
    return "supported values: " + ", ".join(_go_quote(v) for v in values)


def invalid(group: str, kind: str, name: str, errors: list[FieldError]) -> ApiError:
    """``errors.NewInvalid``: 422 with the aggregated messages (``[a, b]`` when more than one)."""
    messages: list[str] = []
    for err in errors:
        if str(err) not in messages:
            messages.append(str(err))
    aggregated = messages[0] if len(messages) == 1 else "[" + ", ".join(messages) + "]"
    qualified_kind = f"{kind}.{group}" if group else kind
    details = _details(group, kind, name, causes=[e.cause() for e in errors])
    return ApiError(422, "Invalid", f"{qualified_kind} {_go_quote(name)} is invalid: {aggregated}", details)


# ---------------------------------------------------------------------------------------------------------------
# Resources
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ResourceType:
    group: str
    version: str
    kind: str
    plural: str
    singular: str
    short_names: tuple[str, ...] = ()
    has_status: bool = False
    has_generation: bool = False

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def list_kind(self) -> str:
        return self.kind + "List"

    @property
    def qualified(self) -> str:
        return _qualified(self.group, self.plural)


CRONJOBS = ResourceType(
    "batch", "v1", "CronJob", "cronjobs", "cronjob", ("cj",), has_status=True, has_generation=True
)
JOBS = ResourceType("batch", "v1", "Job", "jobs", "job", (), has_status=True, has_generation=True)
CONFIGMAPS = ResourceType("", "v1", "ConfigMap", "configmaps", "configmap", ("cm",))
RESOURCES: tuple[ResourceType, ...] = (CRONJOBS, JOBS, CONFIGMAPS)


def resource_for(name: str) -> ResourceType:
    """Look a resource up by kind, plural, singular, short name or ``plural.group``."""
    wanted = name.lower()
    for res in RESOURCES:
        names = {res.kind.lower(), res.plural, res.singular, res.qualified, *res.short_names}
        if wanted in names:
            return res
    known = ", ".join(r.plural for r in RESOURCES)
    raise KeyError(f"unknown resource {name!r}; the emulator serves {known}")


def _gvk_string(api_version: str, kind: str) -> str:
    """``schema.GroupVersionKind.String()``: ``batch/v1, Kind=CronJob``, ``/v1, Kind=ConfigMap``."""
    group, _, version = api_version.rpartition("/")
    return f"{group}/{version}, Kind={kind}"


# ---------------------------------------------------------------------------------------------------------------
# Label and field selectors (k8s.io/apimachinery/pkg/labels/selector.go)
# ---------------------------------------------------------------------------------------------------------------

_SPECIAL = "=!(),><"
_TOKENS = {"!": "not", "!=": "ne", "(": "open", ")": "close", ",": "comma", "=": "eq", "==": "deq", ">": "gt",
           "<": "lt", "in": "in", "notin": "notin"}  # fmt: skip


@dataclass(frozen=True)
class Requirement:
    key: str
    operator: str  # in | notin | exists | !exists | gt | lt  (=, == -> in; != -> notin)
    values: tuple[str, ...] = ()

    def matches(self, labels: dict[str, str]) -> bool:
        present = self.key in labels
        if self.operator == "exists":
            return present
        if self.operator == "!exists":
            return not present
        if self.operator == "in":
            return present and labels[self.key] in self.values
        if self.operator == "notin":
            return not present or labels[self.key] not in self.values
        if not present:
            return False
        try:
            have = int(labels[self.key])
        except ValueError:
            return False
        want = int(self.values[0])
        return have > want if self.operator == "gt" else have < want


def _lex_selector(text: str) -> list[tuple[str, str]]:
    items: list[tuple[str, str]] = []
    pos = 0
    while True:
        while pos < len(text) and text[pos] in " \t\r\n":
            pos += 1
        if pos >= len(text):
            items.append(("end", ""))
            return items
        if text[pos] in _SPECIAL:
            buffer = ""
            last: tuple[str, str] | None = None
            while pos < len(text) and text[pos] in _SPECIAL:
                candidate = buffer + text[pos]
                if candidate in _TOKENS:
                    buffer = candidate
                    last = (_TOKENS[candidate], candidate)
                    pos += 1
                elif last is not None:
                    break
                else:
                    buffer = candidate
                    pos += 1
            if last is None:
                items.append(("error", f"error expected: keyword found '{buffer}'"))
            else:
                items.append(last)
            continue
        start = pos
        while pos < len(text) and text[pos] not in _SPECIAL and text[pos] not in " \t\r\n":
            pos += 1
        word = text[start:pos]
        items.append((_TOKENS[word], word) if word in ("in", "notin") else ("id", word))


def parse_label_selector(text: str) -> list[Requirement]:
    """Parse a label selector the way ``labels.Parse`` does; raise ValueError with its message."""
    items = _lex_selector(text)
    pos = 0

    def look(values: bool) -> tuple[str, str]:
        tok, lit = items[pos]
        if values and tok in ("in", "notin"):
            tok = "id"
        return tok, lit

    def take(values: bool) -> tuple[str, str]:
        nonlocal pos
        tok_lit = look(values)
        pos += 1
        return tok_lit

    def parse_values() -> tuple[str, ...]:
        tok, lit = take(True)
        if tok != "open":
            raise ValueError(f"found '{lit}' expected: '('")
        tok, lit = look(True)
        if tok == "close":
            take(True)
            return ("",)
        if tok not in ("id", "comma"):
            raise ValueError(f"found '{lit}', expected: ',', ')' or identifier")
        found: list[str] = []
        while True:
            tok, lit = take(True)
            if tok == "id":
                found.append(lit)
                tok2, lit2 = look(True)
                if tok2 == "comma":
                    continue
                if tok2 == "close":
                    break
                raise ValueError(f"found '{lit2}', expected: ',' or ')'")
            if tok == "comma":
                if not found:
                    found.append("")
                tok2, _ = look(True)
                if tok2 in ("close", "comma"):
                    found.append("")
                if tok2 == "close":
                    break
                continue
            raise ValueError(f"found '{lit}', expected: ',', or identifier")
        tok, _ = take(True)
        if tok != "close":
            raise ValueError(f"found '{lit}', expected: ')'")
        return tuple(sorted(set(found)))

    def parse_requirement() -> Requirement:
        tok, lit = take(True)
        negated = tok == "not"
        if negated:
            tok, lit = take(True)
        if tok != "id":
            raise ValueError(f"found '{lit}', expected: identifier")
        key = lit
        for msg in _qualified_name_errors(key):
            raise ValueError(f"{_go_value(key)}: {msg}")
        if negated:  # `!key` is unary; what follows is the caller's business
            return Requirement(key, "!exists")
        nxt, _ = look(True)
        if nxt in ("end", "comma"):
            return Requirement(key, "exists")
        tok, lit = take(False)
        operator = {
            "in": "in",
            "notin": "notin",
            "eq": "in",
            "deq": "in",
            "ne": "notin",
            "gt": "gt",
            "lt": "lt",
        }
        if tok not in operator:
            raise ValueError(f"found '{lit}', expected: in, notin, =, ==, !=, gt, lt")
        if tok in ("in", "notin"):
            values = parse_values()
        else:
            nxt, _ = look(True)
            if nxt in ("end", "comma"):
                values = ("",)
            else:
                vtok, vlit = take(True)
                if vtok != "id":
                    raise ValueError(f"found '{vlit}', expected: identifier")
                values = (vlit,)
        op = operator[tok]
        if op in ("gt", "lt"):
            try:
                int(values[0])
            except ValueError:
                raise ValueError(
                    f"{_go_value(values[0])}: for 'Gt', 'Lt' operators, the value must be an integer"
                ) from None
        else:
            for value in values:
                for msg in _label_value_errors(value):
                    raise ValueError(f"values[0][{key}]: Invalid value: {_go_value(value)}: {msg}")
        return Requirement(key, op, values)

    requirements: list[Requirement] = []
    while True:
        tok, lit = look(True)
        if tok == "end":
            return requirements
        if tok not in ("id", "not"):
            raise ValueError(f"found '{lit}', expected: !, identifier, or 'end of string'")
        try:
            requirements.append(parse_requirement())
        except ValueError as exc:
            raise ValueError(f"unable to parse requirement: {exc}") from None
        tok, lit = take(True)
        if tok == "end":
            return requirements
        if tok != "comma":
            raise ValueError(f"found '{lit}', expected: ',' or 'end of string'")
        tok2, lit2 = look(True)
        if tok2 not in ("id", "not"):
            raise ValueError(f"found '{lit2}', expected: identifier after ','")


def parse_field_selector(text: str) -> list[tuple[str, str, str]]:
    """``fields.ParseSelector`` for the fields every resource supports: metadata.name and metadata.namespace."""
    out: list[tuple[str, str, str]] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        for op in ("!=", "==", "="):
            if op in part:
                key, _, value = part.partition(op)
                break
        else:
            raise ValueError(f"invalid selector: '{text}'; can't understand '{part}'")
        key = key.strip()
        if key not in ("metadata.name", "metadata.namespace"):
            raise ValueError(f'field label not supported: "{key}"')
        out.append((key, "!=" if op == "!=" else "=", value.strip()))
    return out


# ---------------------------------------------------------------------------------------------------------------
# Name, label and key validation (k8s.io/apimachinery/pkg/util/validation)
# ---------------------------------------------------------------------------------------------------------------

_DNS1123_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN = _DNS1123_LABEL + r"(\." + _DNS1123_LABEL + r")*"
_QUALIFIED_NAME = r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_LABEL_VALUE = r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?"
_CONFIG_KEY = r"[-._a-zA-Z0-9]+"

_SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must "
    f"start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '{_DNS1123_SUBDOMAIN}')"
)
_LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end "
    f"with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '{_DNS1123_LABEL}')"
)
_QUALIFIED_PART_MSG = (
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric "
    f"character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '{_QUALIFIED_NAME}')"
)
_LABEL_VALUE_MSG = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start "
    f"and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '{_LABEL_VALUE}')"
)
_CONFIG_KEY_MSG = (
    "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or "
    f"'KEY_NAME',  or 'key-name', regex used for validation is '{_CONFIG_KEY}')"
)


def _subdomain_errors(value: str) -> list[str]:
    errors = []
    if len(value) > 253:
        errors.append("must be no more than 253 characters")
    if not re.fullmatch(_DNS1123_SUBDOMAIN, value):
        errors.append(_SUBDOMAIN_MSG)
    return errors


def _dns_label_errors(value: str) -> list[str]:
    errors = []
    if len(value) > 63:
        errors.append("must be no more than 63 characters")
    if not re.fullmatch(_DNS1123_LABEL, value):
        errors.append(_LABEL_MSG)
    return errors


def _qualified_name_errors(value: str) -> list[str]:
    parts = value.split("/")
    if len(parts) > 2:
        return [
            "a qualified name " + _QUALIFIED_PART_MSG + " with an optional DNS subdomain prefix and '/' "
            "(e.g. 'example.com/MyName')"
        ]
    errors: list[str] = []
    name = parts[-1]
    if len(parts) == 2:
        if not parts[0]:
            errors.append("prefix part must be non-empty")
        else:
            errors.extend("prefix part " + msg for msg in _subdomain_errors(parts[0]))
    if not name:
        errors.append("name part must be non-empty")
    elif len(name) > 63:
        errors.append("name part must be no more than 63 characters")
    if name and not re.fullmatch(_QUALIFIED_NAME, name):
        errors.append("name part " + _QUALIFIED_PART_MSG)
    return errors


def _label_value_errors(value: str) -> list[str]:
    errors = []
    if len(value) > 63:
        errors.append("must be no more than 63 characters")
    if not re.fullmatch(_LABEL_VALUE, value):
        errors.append(_LABEL_VALUE_MSG)
    return errors


def _validate_labels(labels: Any, path: str) -> list[FieldError]:
    errors: list[FieldError] = []
    if not isinstance(labels, dict):
        return errors
    for key, value in labels.items():
        errors.extend(FieldError("Invalid", path, key, msg) for msg in _qualified_name_errors(key))
        errors.extend(FieldError("Invalid", path, value, msg) for msg in _label_value_errors(str(value)))
    return errors


def _validate_object_meta(meta: Obj, check_name: Callable[[str], list[str]]) -> list[FieldError]:
    errors: list[FieldError] = []
    name = meta.get("name") or ""
    if not name and not meta.get("generateName"):
        errors.append(FieldError("Required", "metadata.name", detail="name or generateName is required"))
    elif name:
        errors.extend(FieldError("Invalid", "metadata.name", name, msg) for msg in check_name(name))
    errors.extend(_validate_labels(meta.get("labels"), "metadata.labels"))
    for key in meta.get("annotations") or {}:
        errors.extend(
            FieldError("Invalid", "metadata.annotations", key, msg) for msg in _qualified_name_errors(key)
        )
    size = sum(len(k) + len(str(v)) for k, v in (meta.get("annotations") or {}).items())
    if size > 256 * 1024:
        errors.append(
            FieldError("TooLong", "metadata.annotations", detail="may not be more than 262144 bytes")
        )
    return errors


# ---------------------------------------------------------------------------------------------------------------
# Cron schedules (github.com/robfig/cron/v3 ParseStandard) and time zones
# ---------------------------------------------------------------------------------------------------------------

_CRON_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (  # name, min, max, names
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("dom", 1, 31, {}),
    (
        "month",
        1,
        12,
        {
            m: i + 1
            for i, m in enumerate(
                ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
            )
        },
    ),
    ("dow", 0, 6, {d: i for i, d in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}),
)
_DESCRIPTORS = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
_GO_DURATION = re.compile(r"([0-9]*(\.[0-9]*)?(ns|us|µs|ms|s|m|h))+")


def _cron_int(expr: str) -> int:
    try:
        number = int(expr, 10)
    except ValueError:
        raise ValueError(
            f"failed to parse int from {expr}: strconv.Atoi: parsing {_go_quote(expr)}: invalid syntax"
        ) from None
    if number < 0:
        raise ValueError(f"negative number ({number}) not allowed: {expr}")
    return number


def _cron_value(expr: str, names: dict[str, int]) -> int:
    return names[expr.lower()] if expr.lower() in names else _cron_int(expr)


def _cron_range(expr: str, low: int, high: int, names: dict[str, int]) -> None:
    range_and_step = expr.split("/")
    low_and_high = range_and_step[0].split("-")
    single_digit = len(low_and_high) == 1
    if low_and_high[0] in ("*", "?"):
        start, end = low, high
    else:
        start = _cron_value(low_and_high[0], names)
        if len(low_and_high) == 1:
            end = start
        elif len(low_and_high) == 2:
            end = _cron_value(low_and_high[1], names)
        else:
            raise ValueError(f"too many hyphens: {expr}")
    if len(range_and_step) == 2:
        step = _cron_int(range_and_step[1])
        if single_digit:
            end = high
    elif len(range_and_step) > 2:
        raise ValueError(f"too many slashes: {expr}")
    else:
        step = 1
    if start < low:
        raise ValueError(f"beginning of range ({start}) below minimum ({low}): {expr}")
    if end > high:
        raise ValueError(f"end of range ({end}) above maximum ({high}): {expr}")
    if start > end:
        raise ValueError(f"beginning of range ({start}) beyond end of range ({end}): {expr}")
    if step == 0:
        raise ValueError(f"step of range should be a positive number: {expr}")


def cron_error(schedule: str) -> str | None:
    """The error ``cron.ParseStandard`` gives for a schedule, or None when it parses."""
    spec = schedule.strip()
    if not spec:
        return "empty spec string"
    if spec.startswith(("TZ=", "CRON_TZ=")):
        head, _, spec = spec.partition(" ")
        zone = head.partition("=")[2]
        try:
            _load_zone(zone)
        except ValueError as exc:
            return f"provided bad location {zone}: {exc}"
        spec = spec.strip()
    if spec.startswith("@"):
        if spec.startswith("@every "):
            duration = spec[len("@every ") :]
            if not _GO_DURATION.fullmatch(duration) or duration in ("", "."):
                return f"failed to parse duration {spec}: time: invalid duration {_go_quote(duration)}"
            return None
        return None if spec in _DESCRIPTORS else f"unrecognized descriptor: {spec}"
    fields = spec.split()
    if len(fields) != 5:
        return f"expected exactly 5 fields, found {len(fields)}: [{' '.join(fields)}]"
    for expr, (_, low, high, names) in zip(fields, _CRON_FIELDS, strict=True):
        for part in expr.split(","):
            try:
                _cron_range(part, low, high, names)
            except ValueError as exc:
                return str(exc)
    return None


def _load_zone(zone: str) -> None:
    if zone in ("UTC", ""):
        return
    try:
        zoneinfo.ZoneInfo(zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, IsADirectoryError, OSError):
        raise ValueError(f"unknown time zone {zone}") from None


def _validate_time_zone(zone: Any, path: str) -> list[FieldError]:
    if zone is None:
        return []
    if not isinstance(zone, str) or zone == "":
        return [FieldError("Invalid", path, zone, "timeZone must be nil or non-empty string")]
    for part in zone.split("/"):
        if part in (".", "..") or part.startswith("-") or not re.fullmatch(r"[A-Za-z.\-_0-9+]{1,14}", part):
            return [FieldError("Invalid", path, zone, f"unknown time zone {zone}")]
    errors = []
    if zone.lower() == "local":
        errors.append(
            FieldError(
                "Invalid",
                path,
                zone,
                "timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones",
            )
        )
    try:
        _load_zone(zone)
    except ValueError as exc:
        errors.append(FieldError("Invalid", path, zone, str(exc)))
    return errors


# ---------------------------------------------------------------------------------------------------------------
# Object validation (pkg/apis/batch/validation, pkg/apis/core/validation), the parts pullctl can get wrong
# ---------------------------------------------------------------------------------------------------------------


def _nonnegative(value: Any, path: str) -> list[FieldError]:
    if isinstance(value, int) and not isinstance(value, bool) and value < 0:
        return [FieldError("Invalid", path, value, "must be greater than or equal to 0")]
    return []


def _validate_pod_template(template: Any, path: str) -> list[FieldError]:
    template = template if isinstance(template, dict) else {}
    errors = _validate_labels((template.get("metadata") or {}).get("labels"), f"{path}.metadata.labels")
    spec = template.get("spec") or {}
    containers = spec.get("containers") or []
    if not containers:
        errors.append(FieldError("Required", f"{path}.spec.containers"))
    seen: set[str] = set()
    for kind in ("initContainers", "containers"):
        for index, container in enumerate(spec.get(kind) or []):
            where = f"{path}.spec.{kind}[{index}]"
            name = (container or {}).get("name") or ""
            if not name:
                errors.append(FieldError("Required", f"{where}.name"))
            else:
                errors.extend(
                    FieldError("Invalid", f"{where}.name", name, msg) for msg in _dns_label_errors(name)
                )
                if name in seen:
                    errors.append(FieldError("Duplicate", f"{where}.name", name))
                seen.add(name)
            if not (container or {}).get("image"):
                errors.append(FieldError("Required", f"{where}.image"))
    return errors


def _validate_job_spec(spec: Obj, path: str) -> list[FieldError]:
    errors: list[FieldError] = []
    for name in (
        "parallelism",
        "completions",
        "activeDeadlineSeconds",
        "backoffLimit",
        "ttlSecondsAfterFinished",
    ):
        errors.extend(_nonnegative(spec.get(name), f"{path}.{name}"))
    mode = spec.get("completionMode")
    if mode is not None and mode not in ("NonIndexed", "Indexed"):
        errors.append(
            FieldError("NotSupported", f"{path}.completionMode", mode, _supported(["NonIndexed", "Indexed"]))
        )
    if mode == "Indexed" and spec.get("completions") is None:
        errors.append(FieldError("Required", f"{path}.completions", detail="when completion mode is Indexed"))
    template = spec.get("template") or {}
    errors.extend(_validate_pod_template(template, f"{path}.template"))
    restart = (template.get("spec") or {}).get("restartPolicy") or ""
    if restart in ("", "Always"):
        errors.append(
            FieldError(
                "Required", f"{path}.template.spec.restartPolicy", detail='valid values: "OnFailure", "Never"'
            )
        )
    elif restart not in ("OnFailure", "Never"):
        errors.append(
            FieldError(
                "NotSupported",
                f"{path}.template.spec.restartPolicy",
                restart,
                _supported(["OnFailure", "Never"]),
            )
        )
    return errors


def _validate_cronjob(obj: Obj, old: Obj | None) -> list[FieldError]:
    meta = obj.get("metadata") or {}
    errors = _validate_object_meta(meta, _subdomain_errors)
    spec = obj.get("spec") or {}
    old_spec = (old or {}).get("spec") or {}
    schedule = spec.get("schedule") or ""
    if not schedule:
        errors.append(FieldError("Required", "spec.schedule"))
    else:
        problem = cron_error(schedule)
        if problem:
            errors.append(FieldError("Invalid", "spec.schedule", schedule, problem))
        allow_tz = "TZ" in (old_spec.get("schedule") or "")
        if allow_tz and "TZ" in schedule and spec.get("timeZone") is not None:
            errors.append(
                FieldError(
                    "Invalid",
                    "spec.schedule",
                    schedule,
                    "cannot use both timeZone field and TZ or CRON_TZ in schedule",
                )
            )
        elif not allow_tz and "TZ" in schedule:
            errors.append(
                FieldError(
                    "Invalid",
                    "spec.schedule",
                    schedule,
                    "cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
                )
            )
    errors.extend(_nonnegative(spec.get("startingDeadlineSeconds"), "spec.startingDeadlineSeconds"))
    if old is None or old_spec.get("timeZone") != spec.get("timeZone"):
        errors.extend(_validate_time_zone(spec.get("timeZone"), "spec.timeZone"))
    policy = spec.get("concurrencyPolicy") or ""
    if policy == "":
        errors.append(FieldError("Required", "spec.concurrencyPolicy"))
    elif policy not in ("Allow", "Forbid", "Replace"):
        errors.append(
            FieldError(
                "NotSupported", "spec.concurrencyPolicy", policy, _supported(["Allow", "Forbid", "Replace"])
            )
        )
    job_spec = (spec.get("jobTemplate") or {}).get("spec") or {}
    errors.extend(_validate_job_spec(job_spec, "spec.jobTemplate.spec"))
    if job_spec.get("selector") is not None:
        errors.append(
            FieldError(
                "Invalid",
                "spec.jobTemplate.spec.selector",
                job_spec["selector"],
                "`selector` will be auto-generated",
            )
        )
    for name in ("successfulJobsHistoryLimit", "failedJobsHistoryLimit"):
        errors.extend(_nonnegative(spec.get(name), f"spec.{name}"))
    name = meta.get("name") or ""
    if old is None and len(name) > 52:
        errors.append(FieldError("Invalid", "metadata.name", name, "must be no more than 52 characters"))
    return errors


def _validate_job(obj: Obj, old: Obj | None) -> list[FieldError]:
    errors = _validate_object_meta(obj.get("metadata") or {}, _subdomain_errors)
    return errors + _validate_job_spec(obj.get("spec") or {}, "spec")


def _validate_configmap(obj: Obj, old: Obj | None) -> list[FieldError]:
    errors = _validate_object_meta(obj.get("metadata") or {}, _subdomain_errors)
    data = obj.get("data") or {}
    binary = obj.get("binaryData") or {}
    total = 0
    for section, values in (("data", data), ("binaryData", binary)):
        for key, value in values.items():
            where = f"{section}[{key}]"
            if len(key) > 253:
                errors.append(FieldError("Invalid", where, key, "must be no more than 253 characters"))
            if not re.fullmatch(_CONFIG_KEY, key):
                errors.append(FieldError("Invalid", where, key, _CONFIG_KEY_MSG))
            if key in (".", ".."):
                errors.append(FieldError("Invalid", where, key, f"must not be '{key}'"))
            elif key.startswith(".."):
                errors.append(FieldError("Invalid", where, key, "must not start with '..'"))
            if section == "data" and key in binary:
                errors.append(FieldError("Invalid", where, key, "duplicate of key present in binaryData"))
            total += len(str(value))
    if total > 1024 * 1024:
        errors.append(FieldError("TooLong", "", detail="must have at most 1048576 bytes"))
    if old is not None and old.get("immutable") is True:
        message = "field is immutable when `immutable` is set"
        if obj.get("immutable") is not True:
            errors.append(FieldError("Forbidden", "immutable", detail=message))
        if (old.get("data") or {}) != data:
            errors.append(FieldError("Forbidden", "data", detail=message))
        if (old.get("binaryData") or {}) != binary:
            errors.append(FieldError("Forbidden", "binaryData", detail=message))
    return errors


_VALIDATORS: dict[str, Callable[[Obj, Obj | None], list[FieldError]]] = {
    "CronJob": _validate_cronjob,
    "Job": _validate_job,
    "ConfigMap": _validate_configmap,
}


# ---------------------------------------------------------------------------------------------------------------
# Defaulting (pkg/apis/batch/v1/defaults.go, pkg/apis/core/v1/defaults.go) and quantities
# ---------------------------------------------------------------------------------------------------------------

_BINARY = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_QUANTITY = re.compile(
    r"([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?[0-9]+)?"
)


def canonical_quantity(text: Any, round_to_milli: bool = False) -> Any:
    """``resource.Quantity`` as the apiserver writes it back: ``0.5`` -> ``500m``, ``2048Mi`` -> ``2Gi``."""
    if isinstance(text, bool) or not isinstance(text, str | int | float):
        return text
    match = _QUANTITY.fullmatch(str(text).strip())
    if not match:
        return text
    number, suffix = match.group(1), match.group(2) or ""
    value = Fraction(number)
    if suffix in _BINARY:
        value *= 1024 ** _BINARY[suffix]
        fmt = "binary"
    elif suffix[:1] in ("e", "E"):
        value *= Fraction(10) ** int(suffix[1:])
        fmt = "exponent"
    else:
        value *= Fraction(10) ** _DECIMAL[suffix]
        fmt = "decimal"
    sign = "-" if value < 0 else ""
    value = abs(value)
    if round_to_milli:
        value = Fraction(math.ceil(value * 1000), 1000)
    if value == 0:
        return "0"
    if fmt == "binary" and value >= 1024 and value.denominator == 1:
        amount, exponent = int(value), 0
        while amount % 1024 == 0 and exponent < 6:
            amount //= 1024
            exponent += 1
        return f"{sign}{amount}{next(k for k, v in _BINARY.items() if v == exponent) if exponent else ''}"
    amount, exponent = math.ceil(value * 10**9), -9
    while amount % 1000 == 0 and exponent < 18:
        amount //= 1000
        exponent += 3
    if fmt == "exponent":
        return f"{sign}{amount}{'e' + str(exponent) if exponent else ''}"
    return f"{sign}{amount}{next(k for k, v in _DECIMAL.items() if v == exponent)}"


def _image_pull_policy(image: str) -> str:
    name = image.split("@", 1)
    has_digest = len(name) == 2
    last = name[0].rsplit("/", 1)[-1]
    tag = last.rsplit(":", 1)[1] if ":" in last else ""
    if not tag and not has_digest:
        tag = "latest"
    return "Always" if tag == "latest" else "IfNotPresent"


def _default_probe(probe: Any) -> None:
    if not isinstance(probe, dict):
        return
    for key, value in (
        ("timeoutSeconds", 1),
        ("periodSeconds", 10),
        ("successThreshold", 1),
        ("failureThreshold", 3),
    ):
        if not probe.get(key):
            probe[key] = value
    _default_http_get(probe.get("httpGet"))


def _default_http_get(action: Any) -> None:
    if isinstance(action, dict):
        if not action.get("path"):
            action["path"] = "/"
        if not action.get("scheme"):
            action["scheme"] = "HTTP"


def _default_container(container: Obj) -> None:
    if not container.get("imagePullPolicy"):
        container["imagePullPolicy"] = _image_pull_policy(str(container.get("image") or ""))
    if not container.get("terminationMessagePath"):
        container["terminationMessagePath"] = "/dev/termination-log"
    if not container.get("terminationMessagePolicy"):
        container["terminationMessagePolicy"] = "File"
    for port in container.get("ports") or []:
        if isinstance(port, dict) and not port.get("protocol"):
            port["protocol"] = "TCP"
    for env in container.get("env") or []:
        field_ref = ((env or {}).get("valueFrom") or {}).get("fieldRef")
        if isinstance(field_ref, dict) and not field_ref.get("apiVersion"):
            field_ref["apiVersion"] = "v1"
    resources = container.get("resources")
    if isinstance(resources, dict):
        for section in ("limits", "requests"):
            values = resources.get(section)
            if isinstance(values, dict):
                resources[section] = {
                    k: canonical_quantity(v, round_to_milli=True) for k, v in values.items()
                }
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        _default_probe(container.get(probe))
    for hook in ("postStart", "preStop"):
        _default_http_get(((container.get("lifecycle") or {}).get(hook) or {}).get("httpGet"))


def _default_pod_spec(spec: Obj) -> None:
    defaults = {"dnsPolicy": "ClusterFirst", "restartPolicy": "Always", "schedulerName": "default-scheduler"}
    for key, value in defaults.items():
        if not spec.get(key):
            spec[key] = value
    if spec.get("securityContext") is None:
        spec["securityContext"] = {}
    if spec.get("terminationGracePeriodSeconds") is None:
        spec["terminationGracePeriodSeconds"] = 30
    for volume in spec.get("volumes") or []:
        if not isinstance(volume, dict):
            continue
        if set(volume) <= {"name"}:
            volume["emptyDir"] = {}
        for source in ("secret", "configMap", "downwardAPI", "projected"):
            if isinstance(volume.get(source), dict) and volume[source].get("defaultMode") is None:
                volume[source]["defaultMode"] = 420
        if isinstance(volume.get("hostPath"), dict) and volume["hostPath"].get("type") is None:
            volume["hostPath"]["type"] = ""
        if isinstance(volume.get("emptyDir"), dict) and "sizeLimit" in volume["emptyDir"]:
            volume["emptyDir"]["sizeLimit"] = canonical_quantity(volume["emptyDir"]["sizeLimit"])
    for kind in ("initContainers", "containers"):
        for container in spec.get(kind) or []:
            if isinstance(container, dict):
                _default_container(container)


def _default_job_spec_template(spec: Obj) -> None:
    template = spec.get("template")
    if isinstance(template, dict):
        template.setdefault("spec", {})
        if isinstance(template["spec"], dict):
            _default_pod_spec(template["spec"])


def _default_cronjob(obj: Obj) -> None:
    spec = obj.setdefault("spec", {})
    if not spec.get("concurrencyPolicy"):
        spec["concurrencyPolicy"] = "Allow"
    for key, value in (("suspend", False), ("successfulJobsHistoryLimit", 3), ("failedJobsHistoryLimit", 1)):
        if spec.get(key) is None:
            spec[key] = value
    job_spec = (spec.get("jobTemplate") or {}).get("spec")
    if isinstance(job_spec, dict):
        _default_job_spec_template(job_spec)
    obj.setdefault("status", {})


def _default_job(obj: Obj) -> None:
    spec = obj.setdefault("spec", {})
    if spec.get("completions") is None and spec.get("parallelism") is None:
        spec["completions"] = 1
    if spec.get("parallelism") is None:
        spec["parallelism"] = 1
    if spec.get("backoffLimit") is None:
        spec["backoffLimit"] = 6
    if spec.get("completionMode") is None:
        spec["completionMode"] = "NonIndexed"
    if spec.get("suspend") is None:
        spec["suspend"] = False
    if spec.get("podReplacementPolicy") is None:
        spec["podReplacementPolicy"] = "Failed" if spec.get("podFailurePolicy") else "TerminatingOrFailed"
    template_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels")
    meta = obj.setdefault("metadata", {})
    if template_labels and not meta.get("labels"):
        meta["labels"] = dict(template_labels)
    _default_job_spec_template(spec)
    obj.setdefault("status", {})


_DEFAULTERS: dict[str, Callable[[Obj], None]] = {"CronJob": _default_cronjob, "Job": _default_job}


def _omit_empty(value: Any) -> None:
    """Drop, in place, what Go's ``omitempty`` drops when the stored object is written back: nulls, empty lists,
    empty maps of the ``map[string]string`` kind (labels, annotations, data, ...)."""
    if isinstance(value, dict):
        for key in list(value):
            child = value[key]
            _omit_empty(child)
            if child is None or child == [] or (child == {} and key in _OMITTED_EMPTY_MAPS):
                del value[key]
    elif isinstance(value, list):
        for item in value:
            _omit_empty(item)


_OMITTED_EMPTY_MAPS = frozenset(
    {"labels", "annotations", "data", "binaryData", "nodeSelector", "limits", "requests", "matchLabels"}
)


# ---------------------------------------------------------------------------------------------------------------
# Server-side apply: field sets, merge, ownership (sigs.k8s.io/structured-merge-diff)
# ---------------------------------------------------------------------------------------------------------------

# List types from the Kubernetes OpenAPI (x-kubernetes-list-type / -list-map-keys); any other list is atomic.
KEYED_LISTS: dict[str, tuple[str, ...]] = {
    "containers": ("name",),
    "initContainers": ("name",),
    "ephemeralContainers": ("name",),
    "env": ("name",),
    "volumes": ("name",),
    "volumeMounts": ("mountPath",),
    "volumeDevices": ("devicePath",),
    "imagePullSecrets": ("name",),
    "ports": ("containerPort", "protocol"),
    "hostAliases": ("ip",),
    "ownerReferences": ("uid",),
    "conditions": ("type",),
    "resourceClaims": ("name",),
    "schedulingGates": ("name",),
    "topologySpreadConstraints": ("topologyKey", "whenUnsatisfiable"),
}
KEY_DEFAULTS: dict[str, dict[str, Any]] = {"ports": {"protocol": "TCP"}}
SET_LISTS = frozenset({"finalizers"})
# Maps the schema marks atomic (x-kubernetes-map-type: atomic): owned and replaced as a whole.
ATOMIC_MAPS = frozenset(
    {"selector", "nodeSelector", "secretKeyRef", "configMapKeyRef", "fieldRef", "resourceFieldRef", "configMapRef",
     "secretRef", "seLinuxOptions"}
)  # fmt: skip
_ITEM = object()  # leaf marker for a keyed list item in a field-value map
# Paths never owned by a manager (fieldmanager stripmeta.go).
_STRIPPED = frozenset(
    {("f:apiVersion",), ("f:kind",), ("f:metadata",)}
    | {("f:metadata", f"f:{n}") for n in ("name", "namespace", "creationTimestamp", "selfLink", "uid",
                                          "clusterName", "generation", "managedFields", "resourceVersion")}
)  # fmt: skip


def _json_compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _item_key(list_name: str, item: Any) -> str | None:
    """The FieldsV1 element of a keyed list item, ``k:{"name":"main"}``; None when the item lacks a key."""
    if not isinstance(item, dict):
        return None
    key: Obj = {}
    for field_name in KEYED_LISTS[list_name]:
        if field_name in item:
            key[field_name] = item[field_name]
        elif field_name in KEY_DEFAULTS.get(list_name, {}):
            key[field_name] = KEY_DEFAULTS[list_name][field_name]
        else:
            return None
    return "k:" + _json_compact(dict(sorted(key.items())))


def _list_items(list_name: str, value: list[Any]) -> list[tuple[str, Any]] | None:
    """(element, item) pairs of a keyed or set list, None when the list is atomic (or not keyable)."""
    if list_name in KEYED_LISTS:
        pairs = []
        for item in value:
            key = _item_key(list_name, item)
            if key is None:
                return None
            pairs.append((key, item))
        return pairs
    if list_name in SET_LISTS and all(not isinstance(v, dict | list) for v in value):
        return [("v:" + _json_compact(item), item) for item in value]
    return None


def field_values(value: Any, path: FieldPath = (), name: str = "") -> dict[FieldPath, Any]:
    """Every owned path of a value (structured-merge-diff ``ToFieldSet``) with the value found there."""
    out: dict[FieldPath, Any] = {}

    def walk(val: Any, where: FieldPath, field_name: str) -> None:
        if isinstance(val, dict):
            if field_name in ATOMIC_MAPS:
                out[where] = val
                return
            for key, child in val.items():
                walk(child, (*where, f"f:{key}"), key)
            return
        if isinstance(val, list):
            items = _list_items(field_name, val)
            if items is None:
                out[where] = val
                return
            for element, item in items:
                item_path = (*where, element)
                if element.startswith("v:"):
                    out[item_path] = item
                    continue
                out[item_path] = _ITEM
                for key, child in item.items():
                    walk(child, (*item_path, f"f:{key}"), key)
            return
        out[where] = val

    walk(value, path, name)
    return out


def _owned_paths(obj: Obj, resource: ResourceType) -> set[FieldPath]:
    paths = set(field_values(obj))
    return {p for p in paths if p not in _STRIPPED and not (resource.has_status and p[:1] == ("f:status",))}


def fields_v1(paths: set[FieldPath]) -> Obj:
    """Encode a field set as FieldsV1: ``{"f:spec": {"f:schedule": {}}}``, ``"."`` marking members with children."""
    root: Obj = {}
    for path in paths:
        node = root
        for element in path:
            node = node.setdefault(element, {})

    def finish(node: Obj, where: FieldPath) -> Obj:
        out: Obj = {}
        if node and where in paths:
            out["."] = {}
        order = {"f": 0, "v": 1, "k": 2, "i": 3}
        for key in sorted(node, key=lambda k: (order.get(k[:1], 9), k)):
            out[key] = finish(node[key], (*where, key))
        return out

    return finish(root, ())


def parse_fields_v1(node: Obj, prefix: FieldPath = ()) -> set[FieldPath]:
    paths: set[FieldPath] = set()
    for key, child in node.items():
        if key == ".":
            paths.add(prefix)
        elif not child:
            paths.add((*prefix, key))
        else:
            paths |= parse_fields_v1(child, (*prefix, key))
    return paths


def path_string(path: FieldPath) -> str:
    """``fieldpath.Path.String()``: ``.spec.containers[name="main"].image``."""
    out = ""
    for element in path:
        kind, _, rest = element.partition(":")
        if kind == "f":
            out += "." + rest
        elif kind == "k":
            out += "[" + ",".join(f"{k}={_json_compact(v)}" for k, v in json.loads(rest).items()) + "]"
        elif kind == "v":
            out += f"[={rest}]"
        else:
            out += f"[{rest}]"
    return out


def _find_child(container: Any, element: str) -> tuple[Any, Any] | None:
    """(container, key-or-index) for one path element, None when absent."""
    kind, _, rest = element.partition(":")
    if kind == "f":
        return (container, rest) if isinstance(container, dict) and rest in container else None
    if not isinstance(container, list):
        return None
    if kind == "i":
        index = int(rest)
        return (container, index) if index < len(container) else None
    for index, item in enumerate(container):
        if kind == "v" and "v:" + _json_compact(item) == element:
            return container, index
        if kind == "k" and any(_item_key(name, item) == element for name in _lists_keyed_by(rest)):
            return container, index
    return None


def _lists_keyed_by(key_json: str) -> list[str]:
    fields = sorted(json.loads(key_json))
    return [name for name, keys in KEYED_LISTS.items() if sorted(keys) == fields]


def _remove_path(obj: Obj, path: FieldPath) -> None:
    """Remove the value at ``path`` and the maps or lists it leaves empty."""
    trail: list[tuple[Any, Any]] = []
    node: Any = obj
    for element in path:
        found = _find_child(node, element)
        if found is None:
            return
        trail.append(found)
        node = found[0][found[1]]
    container, key = trail.pop()
    del container[key]
    for parent, parent_key in reversed(trail):
        if parent[parent_key] not in ({}, []):
            return
        del parent[parent_key]


def apply_merge(live: Any, config: Any, name: str = "") -> Any:
    """structured-merge-diff ``Merge``: maps merge, keyed lists merge by key (live order, then new items), atomic
    values are replaced."""
    if isinstance(config, dict) and isinstance(live, dict) and name not in ATOMIC_MAPS:
        out = copy.deepcopy(live)
        for key, value in config.items():
            out[key] = apply_merge(live[key], value, key) if key in live else copy.deepcopy(value)
        return out
    if isinstance(config, list) and isinstance(live, list) and live and config:
        live_items = _list_items(name, live)
        config_items = _list_items(name, config)
        if live_items is None or config_items is None:
            return copy.deepcopy(config)
        wanted = dict(config_items)
        merged = [
            apply_merge(item, wanted[element], "") if element in wanted else copy.deepcopy(item)
            for element, item in live_items
        ]
        seen = {element for element, _ in live_items}
        merged.extend(copy.deepcopy(item) for element, item in config_items if element not in seen)
        return merged
    return copy.deepcopy(config)


def _compare(old: Obj, new: Obj) -> tuple[set[FieldPath], set[FieldPath], set[FieldPath]]:
    """(added, modified, removed) owned paths between two objects."""
    before, after = field_values(old), field_values(new)
    added = set(after) - set(before)
    removed = set(before) - set(after)
    modified = {p for p in set(after) & set(before) if after[p] is not _ITEM and after[p] != before[p]}
    return added, modified, removed


@dataclass
class ManagerEntry:
    manager: str
    operation: str  # Apply | Update
    api_version: str
    time: str
    paths: set[FieldPath]

    @property
    def ident(self) -> tuple[str, str, str]:
        return (self.manager, self.operation, self.api_version if self.operation == "Update" else "")

    def printed(self) -> str:
        if self.operation == "Update":
            return f"{_go_quote(self.manager)} using {self.api_version}"
        return _go_quote(self.manager)

    def encode(self) -> Obj:
        return {
            "manager": self.manager,
            "operation": self.operation,
            "apiVersion": self.api_version,
            "time": self.time,
            "fieldsType": "FieldsV1",
            "fieldsV1": fields_v1(self.paths),
        }


def decode_managed_fields(obj: Obj) -> list[ManagerEntry]:
    entries = []
    for raw in (obj.get("metadata") or {}).get("managedFields") or []:
        entries.append(
            ManagerEntry(
                manager=raw.get("manager", ""),
                operation=raw.get("operation", "Update"),
                api_version=raw.get("apiVersion", ""),
                time=raw.get("time", ""),
                paths=parse_fields_v1(raw.get("fieldsV1") or {}),
            )
        )
    return entries


def encode_managed_fields(entries: list[ManagerEntry]) -> list[Obj]:
    """Sorted as the apiserver sorts them: operation, time, manager, apiVersion."""
    kept = [e for e in entries if e.paths]
    kept.sort(key=lambda e: (e.operation, e.time, e.manager, e.api_version))
    return [e.encode() for e in kept]


def apply_conflict(conflicts: list[tuple[ManagerEntry, FieldPath]]) -> ApiError:
    causes = [
        {
            "reason": "FieldManagerConflict",
            "message": f"conflict with {entry.printed()}",
            "field": path_string(path),
        }
        for entry, path in conflicts
    ]
    if len(conflicts) == 1:
        entry, path = conflicts[0]
        message = f"Apply failed with 1 conflict: conflict with {entry.printed()}: {path_string(path)}"
    else:
        lines: list[str] = []
        for printed in sorted({entry.printed() for entry, _ in conflicts}):
            lines.append(f"conflicts with {printed}:")
            lines.extend(f"- {path_string(p)}" for e, p in conflicts if e.printed() == printed)
        message = f"Apply failed with {len(conflicts)} conflicts: " + "\n".join(lines)
    return ApiError(409, "Conflict", message, {"causes": causes})


# ---------------------------------------------------------------------------------------------------------------
# Merge patch (RFC 7386), strategic merge patch (the common directives), JSON patch (RFC 6902)
# ---------------------------------------------------------------------------------------------------------------


def merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def strategic_merge_patch(target: Any, patch: Any, name: str = "") -> Any:
    if not isinstance(patch, dict) or not isinstance(target, dict):
        return (
            copy.deepcopy({k: v for k, v in patch.items() if not k.startswith("$")})
            if isinstance(patch, dict)
            else (copy.deepcopy(patch))
        )
    if patch.get("$patch") == "replace":
        return copy.deepcopy({k: v for k, v in patch.items() if not k.startswith("$")})
    out = copy.deepcopy(target)
    for key, value in patch.items():
        if key.startswith("$"):
            continue
        if value is None:
            out.pop(key, None)
        elif (
            isinstance(value, list)
            and isinstance(out.get(key), list)
            and (key in KEYED_LISTS or key in SET_LISTS)
        ):
            out[key] = _strategic_list(out[key], value, key)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = strategic_merge_patch(out[key], value, key)
        elif isinstance(value, dict):
            out[key] = strategic_merge_patch({}, value, key)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _strategic_list(live: list[Any], patch: list[Any], name: str) -> list[Any]:
    if name in SET_LISTS:
        return live + [v for v in patch if v not in live]
    merge_key = KEYED_LISTS[name][0]
    out = copy.deepcopy(live)
    for item in patch:
        if not isinstance(item, dict):
            continue
        index = next(
            (i for i, x in enumerate(out) if isinstance(x, dict) and x.get(merge_key) == item.get(merge_key)),
            None,
        )
        if item.get("$patch") == "delete":
            if index is not None:
                del out[index]
        elif index is None:
            out.append({k: v for k, v in item.items() if not k.startswith("$")})
        else:
            out[index] = strategic_merge_patch(out[index], item, "")
    return out


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise ValueError(f"JSON pointer must start with '/': {path}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def json_patch(target: Obj, operations: Any) -> Obj:
    if not isinstance(operations, list):
        raise ApiError(
            400, "BadRequest", "json: cannot unmarshal object into Go value of type jsonpatch.Patch"
        )
    doc: Any = copy.deepcopy(target)

    def resolve(parts: list[str]) -> tuple[Any, str]:
        node = doc
        for part in parts[:-1]:
            node = node[int(part)] if isinstance(node, list) else node[part]
        return node, parts[-1]

    try:
        for op in operations:
            kind, parts = op.get("op"), _pointer(op.get("path", ""))
            if kind == "test":
                node, last = resolve(parts)
                current = node[int(last)] if isinstance(node, list) else node[last]
                if current != op.get("value"):
                    raise ValueError(f"testing value {op.get('path')} failed: test failed")
                continue
            if kind in ("move", "copy"):
                src_node, src_last = resolve(_pointer(op.get("from", "")))
                value = src_node[int(src_last)] if isinstance(src_node, list) else src_node[src_last]
                value = copy.deepcopy(value)
                if kind == "move":
                    del src_node[int(src_last) if isinstance(src_node, list) else src_last]
                kind, op = "add", {"value": value}
            node, last = resolve(parts)
            if kind == "add":
                if isinstance(node, list):
                    node.insert(len(node) if last == "-" else int(last), copy.deepcopy(op.get("value")))
                else:
                    node[last] = copy.deepcopy(op.get("value"))
            elif kind == "remove":
                del node[int(last) if isinstance(node, list) else last]
            elif kind == "replace":
                if isinstance(node, list):
                    node[int(last)] = copy.deepcopy(op.get("value"))
                elif last not in node:
                    raise ValueError(
                        f"replace operation does not apply: doc is missing key: {op.get('path')}"
                    )
                else:
                    node[last] = copy.deepcopy(op.get("value"))
            else:
                raise ValueError(f"Unexpected kind: {kind}")
    except (KeyError, IndexError, ValueError, TypeError) as exc:
        # errors.NewGenericServerResponse(422, ...): reason Invalid, the patch library's message
        raise ApiError(
            422,
            "Invalid",
            str(exc).strip("'"),
            {"causes": [{"reason": "UnexpectedServerResponse", "message": str(exc).strip("'")}]},
        ) from None
    if not isinstance(doc, dict):
        raise bad_request("the patched object is not an object")
    return doc


# ---------------------------------------------------------------------------------------------------------------
# The emulator
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class RecordedRequest:
    """One request as the emulator saw it."""

    method: str
    path: str
    query: dict[str, str]
    content_type: str
    verb: str  # get | list | create | update | patch | delete | deletecollection | "" (discovery)
    resource: str  # plural, "" for discovery
    namespace: str | None
    name: str | None
    status: int = 0
    body: Any = None
    field_manager: str | None = None
    propagation_policy: str | None = None
    dry_run: bool = False


@dataclass
class _Denial:
    verb: str
    resource: str
    namespace: str | None


@dataclass
class _Fault:
    verb: str
    resource: str
    namespace: str | None
    status: int
    message: str | None
    times: int | None  # None: every matching request

    def error(self, res: ResourceType, name: str | None) -> ApiError:
        """The ``Status`` the apiserver answers for this status code (``apimachinery/pkg/api/errors``)."""
        if self.status == 409:  # NewConflict with the storage's OptimisticLockErrorMsg
            return conflict(res.group, res.plural, name or "", self.message or OPTIMISTIC_LOCK_MESSAGE)
        if self.status == 500:  # NewInternalError
            cause = self.message or "etcdserver: request timed out"
            return ApiError(
                500, "InternalError", f"Internal error occurred: {cause}", {"causes": [{"message": cause}]}
            )
        if self.status == 503:  # NewServiceUnavailable
            return ApiError(
                503,
                "ServiceUnavailable",
                self.message or "the server is currently unable to handle the request",
            )
        # 504, NewTimeoutError as the timeout filter raises it (retryAfterSeconds 0 is omitted)
        return ApiError(504, "Timeout", f"Timeout: {self.message or TIMEOUT_MESSAGE}", {})


FAULT_STATUSES = (409, 500, 503, 504)
OPTIMISTIC_LOCK_MESSAGE = (
    "the object has been modified; please apply your changes to the latest version and try again"
)
TIMEOUT_MESSAGE = "request did not complete within requested timeout - context deadline exceeded"


@dataclass
class _Context:
    """What one resource request is about."""

    resource: ResourceType
    namespace: str | None
    name: str | None
    verb: str
    record: RecordedRequest
    query: dict[str, list[str]] = field(default_factory=dict)

    def first(self, key: str) -> str | None:
        values = self.query.get(key)
        return values[0] if values else None


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_bool(value: str | None) -> bool | None:
    if value is None:
        return None
    if value in ("1", "t", "T", "true", "TRUE", "True"):
        return True
    if value in ("0", "f", "F", "false", "FALSE", "False"):
        return False
    raise bad_request(f'strconv.ParseBool: parsing "{value}": invalid syntax')


def _validate_dry_run(kind: str, values: list[str]) -> bool:
    bad = [v for v in values if v != "All"]
    if bad:
        raise invalid(
            "meta.k8s.io", kind, "", [FieldError("NotSupported", "dryRun", values, _supported(["All"]))]
        )
    return bool(values)


class KubeEmulator:
    """A Kubernetes API server emulator on loopback.

    ``token`` is the bearer token requests must carry; ``user`` is the name the 403 messages give (the identity
    that token stands for). ``start()``/``stop()`` (or ``with``) run it; ``url`` is its address.
    """

    def __init__(
        self, token: str = DEFAULT_TOKEN, user: str = DEFAULT_USER, version: str = SERVER_VERSION
    ) -> None:
        self.token = token
        self.user = user
        self.version = version
        self.requests: list[RecordedRequest] = []
        self._objects: dict[tuple[str, str, str], Obj] = {}  # (plural, namespace, name) -> stored object
        self._denials: list[_Denial] = []
        self._faults: list[_Fault] = []
        self._revision = 100
        self._lock = threading.RLock()
        self._server: BackgroundServer | None = None
        self.app = Starlette(
            routes=[Route("/{path:path}", self._endpoint, methods=["GET", "POST", "PUT", "PATCH", "DELETE"])]
        )

    # -- lifecycle ------------------------------------------------------------------------------------------------

    def start(self) -> KubeEmulator:
        self._server = BackgroundServer(self.app).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> KubeEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the emulator is not running; call start() first")
        return self._server.url

    def write_kubeconfig(
        self, path: Path | str, context: str = "emulator", namespace: str = "default"
    ) -> Path:
        """Write a kubeconfig for this emulator (plain http, bearer token) and return its path."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": context, "cluster": {"server": self.url}}],
            "users": [{"name": f"{context}-user", "user": {"token": self.token}}],
            "contexts": [
                {
                    "name": context,
                    "context": {"cluster": context, "user": f"{context}-user", "namespace": namespace},
                }
            ],
            "current-context": context,
            "preferences": {},
        }
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(yaml.safe_dump(config, sort_keys=False))
        return target

    # -- test helpers ---------------------------------------------------------------------------------------------

    def deny(self, verb: str, resource: str, namespace: str | None = None) -> None:
        """Answer 403 to ``verb`` on ``resource`` (plural, kind or short name) in ``namespace`` (None: any)."""
        with self._lock:
            self._denials.append(_Denial(verb, resource_for(resource).plural, namespace))

    def allow_all(self) -> None:
        with self._lock:
            self._denials.clear()

    def fail(
        self,
        verb: str,
        resource: str,
        status: int = 500,
        *,
        namespace: str | None = None,
        times: int | None = None,
        message: str | None = None,
    ) -> None:
        """Answer ``status`` (409, 500, 503 or 504) to authorized ``verb`` requests on ``resource`` in ``namespace``
        (None: any), the next ``times`` of them (None: all), with the apiserver's ``Status`` for it."""
        if status not in FAULT_STATUSES:
            raise ValueError(
                f"fail() answers one of {FAULT_STATUSES}, not {status} (401: change .token; 403: deny())"
            )
        if times is not None and times < 1:
            raise ValueError("times must be at least 1, or None for every request")
        with self._lock:
            self._faults.append(
                _Fault(verb, resource_for(resource).plural, namespace, status, message, times)
            )

    def heal(self) -> None:
        """Forget every ``fail()``."""
        with self._lock:
            self._faults.clear()

    def reset_log(self) -> None:
        with self._lock:
            self.requests.clear()

    def requests_for(self, verb: str | None = None, resource: str | None = None) -> list[RecordedRequest]:
        plural = resource_for(resource).plural if resource else None
        with self._lock:
            return [
                r
                for r in self.requests
                if (verb is None or r.verb == verb) and (plural is None or r.resource == plural)
            ]

    def objects(self, kind: str, namespace: str | None = None) -> list[Obj]:
        """Copies of the stored objects of a kind (``CronJob``, ``cronjobs``, ``cm``, ...), sorted by name."""
        res = resource_for(kind)
        with self._lock:
            found = [
                copy.deepcopy(obj)
                for (plural, ns, _), obj in sorted(self._objects.items())
                if plural == res.plural and (namespace is None or ns == namespace)
            ]
        return found

    def get(self, kind: str, name: str, namespace: str = "default") -> Obj | None:
        with self._lock:
            obj = self._objects.get((resource_for(kind).plural, namespace, name))
            return copy.deepcopy(obj) if obj is not None else None

    def put(self, obj: Obj, validate: bool = True) -> Obj:
        """Store an object directly (no authorization, no field management), as if someone else had created it:
        defaults and the system fields (uid, resourceVersion, creationTimestamp, generation) are set.
        ``metadata.namespace`` defaults to ``default``; ``managedFields`` given are kept. An object the real server
        would refuse raises ValueError with its 422 message, unless ``validate=False``."""
        res = resource_for(obj.get("kind") or "")
        stored = copy.deepcopy(obj)
        stored["apiVersion"] = res.api_version
        stored["kind"] = res.kind
        meta = stored.setdefault("metadata", {})
        meta.setdefault("namespace", "default")
        if not meta.get("name"):
            raise ValueError("put() needs metadata.name")
        with self._lock:
            old = self._objects.get((res.plural, meta["namespace"], meta["name"]))
            if old is not None:
                meta.setdefault("uid", old["metadata"]["uid"])
                meta.setdefault("creationTimestamp", old["metadata"]["creationTimestamp"])
            meta.setdefault("uid", str(uuid.uuid4()))
            meta.setdefault("creationTimestamp", _now())
            if res.has_generation:
                meta.setdefault("generation", 1)
            self._finish(res, stored)
            errors = _VALIDATORS[res.kind](stored, None) if validate else []
            if errors:
                raise ValueError(invalid(res.group, res.kind, meta["name"], errors).message)
            return copy.deepcopy(self._store(res, stored))

    # -- storage --------------------------------------------------------------------------------------------------

    def _finish(self, res: ResourceType, obj: Obj) -> None:
        """Defaults and Go's omitempty, in place."""
        defaulter = _DEFAULTERS.get(res.kind)
        if defaulter is not None:
            defaulter(obj)
        _omit_empty(obj)
        if res.has_status:
            obj.setdefault("status", {})

    def _store(self, res: ResourceType, obj: Obj) -> Obj:
        self._revision += 1
        obj["metadata"]["resourceVersion"] = str(self._revision)
        self._objects[(res.plural, obj["metadata"]["namespace"], obj["metadata"]["name"])] = obj
        return obj

    def _delete_stored(self, res: ResourceType, namespace: str, name: str) -> None:
        self._revision += 1
        self._objects.pop((res.plural, namespace, name), None)

    # -- HTTP -----------------------------------------------------------------------------------------------------

    async def _endpoint(self, request: Request) -> Response:
        body = await request.body()
        path = request.url.path
        query: dict[str, list[str]] = {}
        for key, value in request.query_params.multi_items():
            query.setdefault(key, []).append(value)
        content_type = request.headers.get("content-type", "")
        record = RecordedRequest(
            method=request.method,
            path=path,
            query={k: v[-1] for k, v in query.items()},
            content_type=content_type,
            verb="",
            resource="",
            namespace=None,
            name=None,
        )
        headers = {k.lower(): v for k, v in request.headers.items()}
        with self._lock:
            self.requests.append(record)
            try:
                status, payload = self._dispatch(request.method, path, query, headers, body, record)
                extra: dict[str, str] = {}
            except ApiError as err:
                status, payload, extra = err.code, err.status(), err.headers
            record.status = status
        return Response(
            json.dumps(payload, ensure_ascii=False),
            status_code=status,
            media_type="application/json",
            headers=extra,
        )

    def _dispatch(
        self,
        method: str,
        path: str,
        query: dict[str, list[str]],
        headers: dict[str, str],
        body: bytes,
        record: RecordedRequest,
    ) -> tuple[int, Obj]:
        if headers.get("authorization", "") != f"Bearer {self.token}":
            raise unauthorized()
        parts = [unquote(p) for p in path.strip("/").split("/") if p]
        discovery = self._discovery(parts)
        if discovery is not None:
            if method != "GET":
                raise ApiError(
                    405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
                )
            return 200, discovery
        ctx = self._context(method, parts, query, record)
        record.body = self._parse_body(body, headers.get("content-type", ""))
        self._authorize(ctx)
        self._inject_fault(ctx)
        handler = {
            "get": self._get,
            "list": self._list,
            "create": self._create,
            "update": self._update,
            "patch": self._patch,
            "delete": self._delete,
            "deletecollection": self._delete_collection,
        }[ctx.verb]
        return handler(ctx, body, headers)

    @staticmethod
    def _parse_body(body: bytes, content_type: str) -> Any:
        if not body:
            return None
        try:
            return yaml.safe_load(body) if APPLY_PATCH in content_type else json.loads(body)
        except (ValueError, yaml.YAMLError):
            return body.decode("utf-8", "replace")

    def _context(
        self, method: str, parts: list[str], query: dict[str, list[str]], record: RecordedRequest
    ) -> _Context:
        # /api/v1/... or /apis/<group>/<version>/...
        if parts[:2] == ["api", "v1"]:
            group, version, rest = "", "v1", parts[2:]
        elif len(parts) >= 3 and parts[0] == "apis":
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise resource_not_found()
        namespace: str | None = None
        if len(rest) >= 2 and rest[0] == "namespaces":
            namespace, rest = rest[1], rest[2:]
        if not rest or len(rest) > 2:
            raise resource_not_found()
        plural, name = rest[0], (rest[1] if len(rest) == 2 else None)
        res = next((r for r in RESOURCES if (r.group, r.version, r.plural) == (group, version, plural)), None)
        if res is None:
            raise resource_not_found()
        if name is None:
            verb = {"GET": "list", "POST": "create", "DELETE": "deletecollection"}.get(method)
            if namespace is None and method != "GET":
                raise resource_not_found()
        else:
            if namespace is None:
                raise resource_not_found()
            verb = {"GET": "get", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(method)
        record.resource, record.namespace, record.name = res.plural, namespace, name
        if verb is None:
            raise method_not_supported(res.group, res.plural, method.lower())
        record.verb = verb
        record.field_manager = query.get("fieldManager", [None])[-1]
        record.dry_run = bool(query.get("dryRun"))
        return _Context(res, namespace, name, verb, record, query)

    def _discovery(self, parts: list[str]) -> Obj | None:
        if parts == ["version"]:
            major, minor, _ = self.version.lstrip("v").split(".")
            return {
                "major": major,
                "minor": minor,
                "emulationMajor": major,
                "emulationMinor": minor,
                "minCompatibilityMajor": major,
                "minCompatibilityMinor": str(int(minor) - 1),
                "gitVersion": self.version,
                "gitCommit": "0" * 40,
                "gitTreeState": "clean",
                "buildDate": "2025-04-23T13:00:00Z",
                "goVersion": "go1.24.2",
                "compiler": "gc",
                "platform": "linux/amd64",
            }
        address = self._server.url.removeprefix("http://") if self._server else "127.0.0.1"
        if parts == ["api"]:
            return {
                "kind": "APIVersions",
                "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": address}],
            }
        batch_group = {
            "name": "batch",
            "versions": [{"groupVersion": "batch/v1", "version": "v1"}],
            "preferredVersion": {"groupVersion": "batch/v1", "version": "v1"},
        }
        if parts == ["apis"]:
            return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [batch_group]}
        if parts == ["apis", "batch"]:
            return {"kind": "APIGroup", "apiVersion": "v1", **batch_group}
        if parts in (["api", "v1"], ["apis", "batch", "v1"]):
            group_version = "v1" if parts[0] == "api" else "batch/v1"
            return {
                "kind": "APIResourceList",
                "apiVersion": "v1",
                "groupVersion": group_version,
                "resources": [self._api_resource(r) for r in RESOURCES if r.api_version == group_version],
            }
        return None

    @staticmethod
    def _api_resource(res: ResourceType) -> Obj:
        entry: Obj = {
            "name": res.plural,
            "singularName": res.singular,
            "namespaced": True,
            "kind": res.kind,
            "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
        }
        if res.short_names:
            entry["shortNames"] = list(res.short_names)
        if res.group:
            entry["categories"] = ["all"]
        return entry

    # -- authorization --------------------------------------------------------------------------------------------

    def _denied(self, verb: str, res: ResourceType, namespace: str | None) -> bool:
        return any(
            d.verb == verb and d.resource == res.plural and (d.namespace is None or d.namespace == namespace)
            for d in self._denials
        )

    def _forbidden_reason(self, verb: str, res: ResourceType, namespace: str | None) -> str:
        user = _go_quote(self.user)
        where = f"in the namespace {_go_quote(namespace)}" if namespace else "at the cluster scope"
        return f"User {user} cannot {verb} resource {_go_quote(res.plural)} in API group {_go_quote(res.group)} {where}"

    def _authorize(self, ctx: _Context) -> None:
        if self._denied(ctx.verb, ctx.resource, ctx.namespace):
            name = ctx.name if ctx.verb != "create" else ""
            raise forbidden(
                ctx.resource.group,
                ctx.resource.plural,
                name or "",
                self._forbidden_reason(ctx.verb, ctx.resource, ctx.namespace),
            )

    def _inject_fault(self, ctx: _Context) -> None:
        for fault in self._faults:
            if (fault.verb, fault.resource) != (ctx.verb, ctx.resource.plural):
                continue
            if fault.namespace is not None and fault.namespace != ctx.namespace:
                continue
            if fault.times is not None:
                if fault.times <= 0:
                    continue
                fault.times -= 1
            raise fault.error(ctx.resource, ctx.name)

    # -- handlers -------------------------------------------------------------------------------------------------

    def _key(self, ctx: _Context, name: str | None = None) -> tuple[str, str, str]:
        return (ctx.resource.plural, ctx.namespace or "", name if name is not None else ctx.name or "")

    def _get(self, ctx: _Context, body: bytes, headers: dict[str, str]) -> tuple[int, Obj]:
        obj = self._objects.get(self._key(ctx))
        if obj is None:
            raise not_found(ctx.resource.group, ctx.resource.plural, ctx.name or "")
        return 200, copy.deepcopy(obj)

    def _select(self, ctx: _Context) -> list[Obj]:
        try:
            requirements = parse_label_selector(ctx.first("labelSelector") or "")
            fields = parse_field_selector(ctx.first("fieldSelector") or "")
        except ValueError as exc:
            raise bad_request(str(exc)) from None
        found = []
        for (plural, namespace, _), obj in sorted(self._objects.items()):
            if plural != ctx.resource.plural or (ctx.namespace is not None and namespace != ctx.namespace):
                continue
            meta = obj["metadata"]
            labels = meta.get("labels") or {}
            if not all(r.matches(labels) for r in requirements):
                continue
            if not all(
                (meta.get(key.split(".")[1], "") == value) == (op == "=") for key, op, value in fields
            ):
                continue
            found.append(obj)
        return found

    def _list(self, ctx: _Context, body: bytes, headers: dict[str, str]) -> tuple[int, Obj]:
        if ctx.first("watch") in ("true", "1"):
            raise bad_request("the emulator does not serve watches")
        items = self._select(ctx)
        metadata: Obj = {"resourceVersion": str(self._revision)}
        cont = ctx.first("continue")
        if cont:
            try:
                after = json.loads(base64.b64decode(cont))["start"]
            except (ValueError, KeyError, TypeError):
                raise bad_request("continue key is not valid: illegal base64 data at input byte 0") from None
            items = [o for o in items if (o["metadata"]["namespace"], o["metadata"]["name"]) > tuple(after)]
        limit = int(ctx.first("limit") or 0)
        if limit > 0 and len(items) > limit:
            last = items[limit - 1]["metadata"]
            token = {"v": "meta.k8s.io/v1", "rv": self._revision, "start": [last["namespace"], last["name"]]}
            metadata["continue"] = base64.b64encode(json.dumps(token).encode()).decode()
            metadata["remainingItemCount"] = len(items) - limit
            items = items[:limit]
        out_items = []
        for obj in items:
            item = copy.deepcopy(obj)
            item.pop("apiVersion", None)
            item.pop("kind", None)
            out_items.append(item)
        return 200, {
            "kind": ctx.resource.list_kind,
            "apiVersion": ctx.resource.api_version,
            "metadata": metadata,
            "items": out_items,
        }

    def _decode_object(self, ctx: _Context, body: bytes) -> Obj:
        """Decode a create/update body (JSON or YAML) into the endpoint's kind."""
        try:
            obj = yaml.safe_load(body) if body else None
        except yaml.YAMLError as exc:
            raise bad_request(
                f"the object provided is unrecognized (must be of type {ctx.resource.kind}): {exc}"
            ) from None
        if not isinstance(obj, dict):
            raise bad_request(
                f"the object provided is unrecognized (must be of type {ctx.resource.kind}): "
                "couldn't get version/kind; json parse error"
            )
        res = ctx.resource
        api_version = obj.get("apiVersion") or res.api_version
        kind = obj.get("kind") or res.kind
        if kind != res.kind:
            version = api_version.rpartition("/")[2]
            raise bad_request(
                f"{kind} in version {_go_quote(version)} cannot be handled as a {res.kind}: "
                f"no kind {_go_quote(kind)} is registered for version {_go_quote(api_version)}"
            )
        if api_version != res.api_version:
            raise bad_request(
                f"the API version in the data ({api_version}) does not match the expected API version ({res.api_version})"
            )
        obj["apiVersion"], obj["kind"] = res.api_version, res.kind
        obj.setdefault("metadata", {})
        if not isinstance(obj["metadata"], dict):
            raise bad_request("metadata must be an object")
        return obj

    def _ensure_namespace(self, ctx: _Context, obj: Obj) -> None:
        meta = obj["metadata"]
        if meta.get("namespace") in (None, ""):
            meta["namespace"] = ctx.namespace
        elif meta["namespace"] != ctx.namespace:
            raise bad_request(
                "the namespace of the provided object does not match the namespace sent on the request"
            )

    def _validate(self, ctx: _Context, obj: Obj, old: Obj | None) -> None:
        errors = _VALIDATORS[ctx.resource.kind](obj, old)
        if errors:
            raise invalid(ctx.resource.group, ctx.resource.kind, obj["metadata"].get("name") or "", errors)

    def _manager(self, ctx: _Context, headers: dict[str, str]) -> str:
        """``managerOrUserAgent``: the fieldManager, else the User-Agent up to its first ``/``."""
        manager = ctx.first("fieldManager")
        if manager:
            return manager
        agent = headers.get("user-agent", "").split("/")[0]
        return "".join(ch for ch in agent if ch.isprintable())[:128]

    @staticmethod
    def _reset_system_fields(obj: Obj, old: Obj | None) -> None:
        meta = obj["metadata"]
        for key in (
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
        ):
            meta.pop(key, None)
        meta.pop("generation", None)
        if old is not None:
            for key in (
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
            ):
                if key in old["metadata"]:
                    meta[key] = old["metadata"][key]

    def _update_ownership(
        self, res: ResourceType, old: Obj | None, new: Obj, manager: str, now: str
    ) -> list[ManagerEntry]:
        """Field ownership for an Update operation (create, PUT, merge and strategic patches)."""
        entries = decode_managed_fields(old) if old is not None else []
        added, modified, removed = _compare(_strip_for_fields(old or {}, res), _strip_for_fields(new, res))
        owned = {p for p in added | modified if p not in _STRIPPED}
        for entry in entries:
            entry.paths -= owned | removed
        mine = next((e for e in entries if e.ident == (manager, "Update", res.api_version)), None)
        if mine is None:
            mine = ManagerEntry(manager, "Update", res.api_version, now, set())
            entries.append(mine)
        if owned or removed:
            mine.time = now
        mine.paths = (mine.paths | owned) - removed
        return [e for e in entries if e.paths]

    def _generation(self, res: ResourceType, obj: Obj, old: Obj | None) -> None:
        if not res.has_generation:
            obj["metadata"].pop("generation", None)
            return
        if old is None:
            obj["metadata"]["generation"] = 1
        else:
            generation = old["metadata"].get("generation", 1)
            changed = obj.get("spec") != old.get("spec")
            obj["metadata"]["generation"] = generation + 1 if changed else generation

    def _create(self, ctx: _Context, body: bytes, headers: dict[str, str]) -> tuple[int, Obj]:
        dry_run = _validate_dry_run("CreateOptions", ctx.query.get("dryRun", []))
        obj = self._decode_object(ctx, body)
        self._ensure_namespace(ctx, obj)
        res, meta = ctx.resource, obj["metadata"]
        if not meta.get("name") and meta.get("generateName"):
            alphabet = "bcdfghjklmnpqrstvwxz2456789"
            meta["name"] = meta["generateName"] + "".join(random.choice(alphabet) for _ in range(5))
        meta.pop("resourceVersion", None)
        meta.pop("managedFields", None)
        if res.has_status:
            obj["status"] = {}
        self._reset_system_fields(obj, None)
        self._finish(res, obj)
        self._validate(ctx, obj, None)
        key = self._key(ctx, meta["name"])
        if key in self._objects:
            raise already_exists(res.group, res.plural, meta["name"])
        now = _now()
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now
        self._generation(res, obj, None)
        if res.kind == "Job":
            self._job_selector(obj)
        meta["managedFields"] = encode_managed_fields(
            self._update_ownership(res, None, obj, self._manager(ctx, headers), now)
        )
        if dry_run:
            return 201, copy.deepcopy(obj)
        return 201, copy.deepcopy(self._store(res, obj))

    @staticmethod
    def _job_selector(obj: Obj) -> None:
        """The Job strategy's generated selector and pod labels."""
        spec = obj["spec"]
        if (spec.get("manualSelector") is True) or spec.get("selector"):
            return
        uid, name = obj["metadata"]["uid"], obj["metadata"]["name"]
        spec["selector"] = {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
        labels = spec.setdefault("template", {}).setdefault("metadata", {}).setdefault("labels", {})
        labels.update(
            {
                "batch.kubernetes.io/controller-uid": uid,
                "batch.kubernetes.io/job-name": name,
                "controller-uid": uid,
                "job-name": name,
            }
        )

    def _precondition(self, ctx: _Context, wanted: Any, old: Obj | None) -> None:
        if wanted and old is not None and str(wanted) != old["metadata"]["resourceVersion"]:
            raise conflict(
                ctx.resource.group,
                ctx.resource.plural,
                ctx.name or "",
                "the object has been modified; please apply your changes to the latest version and try again",
            )

    def _check_name(self, ctx: _Context, obj: Obj) -> None:
        name = obj["metadata"].get("name") or ""
        if name != ctx.name:
            raise bad_request(
                f"the name of the object ({name}) does not match the name on the URL ({ctx.name})"
            )
        if obj["metadata"].get("namespace") not in (None, "", ctx.namespace):
            raise bad_request(
                f"the namespace of the object ({obj['metadata']['namespace']}) does not match the namespace on the "
                f"request ({ctx.namespace})"
            )

    def _write(self, ctx: _Context, obj: Obj, old: Obj | None, dry_run: bool) -> Obj:
        """Store ``obj`` unless it equals ``old`` (then nothing changes, not even the resourceVersion)."""
        if old is not None:
            obj["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
            if obj == old:
                return copy.deepcopy(old)
        if dry_run:
            return copy.deepcopy(obj)
        return copy.deepcopy(self._store(ctx.resource, obj))

    def _update(self, ctx: _Context, body: bytes, headers: dict[str, str]) -> tuple[int, Obj]:
        dry_run = _validate_dry_run("UpdateOptions", ctx.query.get("dryRun", []))
        obj = self._decode_object(ctx, body)
        self._check_name(ctx, obj)
        self._ensure_namespace(ctx, obj)
        old = self._objects.get(self._key(ctx))
        if old is None:
            raise not_found(ctx.resource.group, ctx.resource.plural, ctx.name or "")
        self._precondition(ctx, obj["metadata"].get("resourceVersion"), old)
        return 200, self._commit_update(ctx, obj, old, self._manager(ctx, headers), dry_run)

    def _commit_update(self, ctx: _Context, obj: Obj, old: Obj, manager: str, dry_run: bool) -> Obj:
        res = ctx.resource
        obj["metadata"].pop("managedFields", None)
        self._reset_system_fields(obj, old)
        if res.has_status:
            obj["status"] = copy.deepcopy(old.get("status", {}))
        self._finish(res, obj)
        self._validate(ctx, obj, old)
        self._generation(res, obj, old)
        now = _now()
        entries = self._update_ownership(res, old, obj, manager, now)
        obj["metadata"]["managedFields"] = encode_managed_fields(entries)
        return self._write(ctx, obj, old, dry_run)

    def _patch(self, ctx: _Context, body: bytes, headers: dict[str, str]) -> tuple[int, Obj]:
        content_type = headers.get("content-type", "").split(";")[0].strip()
        if content_type not in PATCH_TYPES:
            raise ApiError(
                415,
                "UnsupportedMediaType",
                "the body of the request was in an unknown format - accepted media types include: "
                + ", ".join(PATCH_TYPES),
            )
        force = _parse_bool(ctx.first("force"))
        manager = ctx.first("fieldManager") or ""
        problems: list[FieldError] = []
        if content_type != APPLY_PATCH and force is not None:
            problems.append(
                FieldError("Forbidden", "force", detail="may not be specified for non-apply patch")
            )
        if content_type == APPLY_PATCH and not manager:
            problems.append(FieldError("Required", "fieldManager", detail="is required for apply patch"))
        if len(manager) > 128:
            problems.append(FieldError("TooLong", "fieldManager", detail="may not be more than 128 bytes"))
        dry_values = ctx.query.get("dryRun", [])
        if any(v != "All" for v in dry_values):
            problems.append(FieldError("NotSupported", "dryRun", dry_values, _supported(["All"])))
        if problems:
            raise invalid("meta.k8s.io", "PatchOptions", "", problems)
        dry_run = bool(dry_values)
        old = self._objects.get(self._key(ctx))
        if content_type == APPLY_PATCH:
            return self._apply(ctx, body, old, manager, bool(force), dry_run)
        if old is None:
            raise not_found(ctx.resource.group, ctx.resource.plural, ctx.name or "")
        try:
            patch = json.loads(body or b"null")
        except ValueError as exc:
            raise bad_request(f"error decoding patch: {exc}") from None
        if content_type == JSON_PATCH:
            patched = json_patch(old, patch)
        elif not isinstance(patch, dict):
            raise bad_request("json: cannot unmarshal array into Go value of type map[string]interface {}")
        elif content_type == MERGE_PATCH:
            patched = merge_patch(old, patch)
        else:
            patched = strategic_merge_patch(old, patch)
        if not isinstance(patched, dict):
            raise bad_request("the patched object is not an object")
        patched.setdefault("metadata", {})
        self._check_name(ctx, patched)
        if patched.get("apiVersion") != ctx.resource.api_version or patched.get("kind") != ctx.resource.kind:
            raise bad_request(
                f"invalid object type: {_gvk_string(str(patched.get('apiVersion')), str(patched.get('kind')))}"
            )
        self._precondition(ctx, patched["metadata"].get("resourceVersion"), old)
        return 200, self._commit_update(ctx, patched, old, self._manager(ctx, headers), dry_run)

    def _apply(
        self, ctx: _Context, body: bytes, old: Obj | None, manager: str, force: bool, dry_run: bool
    ) -> tuple[int, Obj]:
        res = ctx.resource
        try:
            config = yaml.safe_load(body) if body else None
        except yaml.YAMLError as exc:
            raise bad_request(f"error decoding YAML: {exc}") from None
        if config is None:
            config = {}
        if not isinstance(config, dict):
            raise bad_request(
                "error decoding YAML: error unmarshaling JSON: while decoding JSON: json: cannot unmarshal "
                f"{type(config).__name__} into Go value of type map[string]interface {{}}"
            )
        meta = config.get("metadata") or {}
        if not isinstance(meta, dict):
            raise bad_request("error decoding YAML: metadata must be an object")
        # In the order of handlers/patch.go: the field manager's checks (versionCheckManager, structured merge)
        # run inside Apply, then applyPatch checks the namespace and the name.
        if config.get("apiVersion") != res.api_version or config.get("kind") != res.kind:
            gvk = _gvk_string(str(config.get("apiVersion") or ""), str(config.get("kind") or ""))
            raise bad_request(f"invalid object type: {gvk}")
        if meta.get("managedFields") is not None:
            raise bad_request("metadata.managedFields must be nil")
        if meta.get("namespace") not in (None, "", ctx.namespace):
            raise bad_request(
                "the namespace of the provided object does not match the namespace sent on the request"
            )
        name = meta.get("name") or ""
        if name != ctx.name:
            raise bad_request(
                f"the name of the object ({name}) does not match the name on the URL ({ctx.name})"
            )
        if old is None and meta.get("uid"):
            raise conflict(
                res.group,
                res.plural,
                name,
                f"uid mismatch: the provided object specified uid {meta['uid']}, and no existing object was found",
            )
        self._precondition(ctx, meta.get("resourceVersion"), old)
        config = copy.deepcopy(config)
        if res.has_status:
            config.pop("status", None)
        for key in ("resourceVersion", "uid", "creationTimestamp", "generation", "selfLink", "managedFields"):
            config["metadata"].pop(key, None)
        config["metadata"]["namespace"] = ctx.namespace
        now = _now()

        live: Obj = copy.deepcopy(old) if old is not None else {}
        live_meta = live.get("metadata", {})
        live_managed = live_meta.pop("managedFields", None)
        entries = decode_managed_fields({"metadata": {"managedFields": live_managed}})
        merged = apply_merge(live, config)

        new_set = _owned_paths(config, res)
        added, modified, removed = _compare(_strip_for_fields(live, res), _strip_for_fields(merged, res))
        changed = (added | modified) - _STRIPPED
        mine = next((e for e in entries if e.ident == (manager, "Apply", "")), None)
        last_set = set(mine.paths) if mine is not None else set()
        conflicts = [
            (entry, path) for entry in entries if entry is not mine for path in sorted(entry.paths & changed)
        ]
        if conflicts and not force:
            raise apply_conflict(conflicts)
        for entry in entries:
            if entry is not mine:
                entry.paths -= changed | removed
        if mine is None:
            mine = ManagerEntry(manager, "Apply", res.api_version, now, set())
            entries.append(mine)
        mine.api_version = res.api_version
        mine.paths = new_set

        # Prune what this manager applied last time and no longer applies, unless someone else owns it.
        others = set().union(*(e.paths for e in entries if e is not mine))
        owned = others | new_set
        for path in sorted(last_set - new_set, key=len, reverse=True):
            if path in others or any(p[: len(path)] == path and p != path for p in owned):
                continue
            _remove_path(merged, path)

        content_changed = _strip_meta_for_compare(merged) != _strip_meta_for_compare(live)
        obj = merged
        obj.setdefault("metadata", {})
        obj["apiVersion"], obj["kind"] = res.api_version, res.kind
        self._reset_system_fields(obj, old)
        if res.has_status:
            obj["status"] = copy.deepcopy((old or {}).get("status", {}))
        self._finish(res, obj)
        self._validate(ctx, obj, old)
        if old is None and self._denied("create", res, ctx.namespace):
            # handlers/patch.go withAuthorization: creating through apply also needs "create"; RBAC gives no reason.
            raise forbidden(res.group, res.plural, name, "")
        if old is None:
            obj["metadata"]["uid"] = str(uuid.uuid4())
            obj["metadata"]["creationTimestamp"] = now
            if res.kind == "Job":
                self._job_selector(obj)
        self._generation(res, obj, old)
        after_defaults_changed = old is None or _strip_meta_for_compare(obj) != _strip_meta_for_compare(old)
        if old is None or (content_changed and after_defaults_changed):
            mine.time = now
        obj["metadata"]["managedFields"] = encode_managed_fields(entries)
        if old is None:
            result = copy.deepcopy(obj) if dry_run else copy.deepcopy(self._store(res, obj))
            return 201, result
        return 200, self._write(ctx, obj, old, dry_run)

    def _delete_options(self, ctx: _Context, body: bytes) -> Obj:
        """DeleteOptions from the body when there is one, else from the query (handlers/delete.go)."""
        options: Obj = {}
        if body:
            try:
                decoded = json.loads(body)
            except ValueError as exc:
                raise bad_request(f"couldn't get version/kind; json parse error: {exc}") from None
            if not isinstance(decoded, dict):
                raise bad_request("decoded object cannot be converted to DeleteOptions")
            options = decoded
        else:
            for key in ("propagationPolicy", "gracePeriodSeconds"):
                if ctx.first(key) is not None:
                    options[key] = ctx.first(key)
            if ctx.first("orphanDependents") is not None:
                options["orphanDependents"] = _parse_bool(ctx.first("orphanDependents"))
            if ctx.query.get("dryRun"):
                options["dryRun"] = ctx.query["dryRun"]
        problems: list[FieldError] = []
        policy = options.get("propagationPolicy")
        if options.get("orphanDependents") is not None and policy is not None:
            problems.append(
                FieldError(
                    "Invalid",
                    "propagationPolicy",
                    policy,
                    "orphanDependents and deletionPropagation cannot be both set",
                )
            )
        if policy is not None and policy not in ("Foreground", "Background", "Orphan"):
            problems.append(
                FieldError(
                    "NotSupported",
                    "propagationPolicy",
                    policy,
                    _supported(["Foreground", "Background", "Orphan", "nil"]),
                )
            )
        dry = options.get("dryRun") or []
        if any(v != "All" for v in dry):
            problems.append(FieldError("NotSupported", "dryRun", dry, _supported(["All"])))
        if problems:
            raise invalid("meta.k8s.io", "DeleteOptions", "", problems)
        ctx.record.propagation_policy = policy
        ctx.record.dry_run = bool(dry)
        return options

    def _delete(self, ctx: _Context, body: bytes, headers: dict[str, str]) -> tuple[int, Obj]:
        options = self._delete_options(ctx, body)
        res = ctx.resource
        obj = self._objects.get(self._key(ctx))
        if obj is None:
            raise not_found(res.group, res.plural, ctx.name or "")
        return self._delete_one(res, obj, options)

    def _delete_one(self, res: ResourceType, obj: Obj, options: Obj) -> tuple[int, Obj]:
        dry_run = bool(options.get("dryRun"))
        meta = obj["metadata"]
        preconditions = options.get("preconditions") or {}
        if preconditions.get("uid") and preconditions["uid"] != meta["uid"]:
            raise conflict(
                res.group,
                res.plural,
                meta["name"],
                f"Precondition failed: UID in precondition: {preconditions['uid']}, UID in object meta: {meta['uid']}",
            )
        if (
            preconditions.get("resourceVersion")
            and preconditions["resourceVersion"] != meta["resourceVersion"]
        ):
            raise conflict(
                res.group,
                res.plural,
                meta["name"],
                f"Precondition failed: ResourceVersion in precondition: {preconditions['resourceVersion']}, "
                f"ResourceVersion in object meta: {meta['resourceVersion']}",
            )
        policy = options.get("propagationPolicy")
        orphan = options.get("orphanDependents")
        if policy is None and orphan is not None:
            policy = "Orphan" if orphan else "Background"
        policy = policy or "Background"  # batch/v1 CronJobs and Jobs delete dependents, ConfigMaps have none
        if policy == "Background":
            answer = {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "details": _details(res.group, res.plural, meta["name"], uid=meta["uid"]),
            }
            if not dry_run:
                self._collect_garbage(res, obj, orphan=False)
                self._delete_stored(res, meta["namespace"], meta["name"])
            return 200, answer
        # Foreground / Orphan: the object waits for the garbage collector behind a finalizer.
        marked = copy.deepcopy(obj)
        finalizer = "foregroundDeletion" if policy == "Foreground" else "orphan"
        marked_meta = marked["metadata"]
        marked_meta["finalizers"] = [
            f for f in marked_meta.get("finalizers", []) if f not in ("foregroundDeletion", "orphan")
        ] + [finalizer]
        marked_meta["deletionTimestamp"] = _now()
        marked_meta["deletionGracePeriodSeconds"] = 0
        if marked_meta.get("generation"):
            marked_meta["generation"] += 1
        status = 202 if orphan is False else 200
        if dry_run:
            return status, marked
        stored = copy.deepcopy(self._store(res, marked))
        self._collect_garbage(res, obj, orphan=policy == "Orphan")
        self._delete_stored(res, meta["namespace"], meta["name"])
        return status, stored

    def _collect_garbage(self, res: ResourceType, owner: Obj, orphan: bool) -> None:
        """The garbage collector, at once: dependents go, or lose the owner reference."""
        uid = owner["metadata"]["uid"]
        for key, obj in list(self._objects.items()):
            refs = obj["metadata"].get("ownerReferences") or []
            if not any(ref.get("uid") == uid for ref in refs):
                continue
            dependent = resource_for(key[0])
            if orphan:
                updated = copy.deepcopy(obj)
                updated["metadata"]["ownerReferences"] = [r for r in refs if r.get("uid") != uid]
                self._finish(dependent, updated)
                self._store(dependent, updated)
            else:
                self._collect_garbage(dependent, obj, orphan=False)
                self._delete_stored(dependent, key[1], key[2])

    def _delete_collection(self, ctx: _Context, body: bytes, headers: dict[str, str]) -> tuple[int, Obj]:
        options = self._delete_options(ctx, body)
        selected = self._select(ctx)
        deleted = []
        for obj in list(selected):
            self._delete_one(ctx.resource, obj, options)
            item = copy.deepcopy(obj)
            item.pop("apiVersion", None)
            item.pop("kind", None)
            deleted.append(item)
        return 200, {
            "kind": ctx.resource.list_kind,
            "apiVersion": ctx.resource.api_version,
            "metadata": {"resourceVersion": str(self._revision)},
            "items": deleted,
        }


def _strip_for_fields(obj: Obj, res: ResourceType) -> Obj:
    out = {k: v for k, v in obj.items() if not (res.has_status and k == "status")}
    if "metadata" in out:
        out["metadata"] = {k: v for k, v in out["metadata"].items() if k != "managedFields"}
    return out


def _strip_meta_for_compare(obj: Obj) -> Obj:
    out = dict(obj)
    if "metadata" in out:
        out["metadata"] = {
            k: v for k, v in out["metadata"].items() if k not in ("managedFields", "resourceVersion")
        }
    return out


@pytest.fixture
def kube_emulator() -> Iterator[KubeEmulator]:
    """A running Kubernetes API emulator, stopped after the test."""
    with KubeEmulator() as emulator:
        yield emulator


__all__ = [
    "CONFIGMAPS",
    "CRONJOBS",
    "DEFAULT_TOKEN",
    "DEFAULT_USER",
    "JOBS",
    "ApiError",
    "KubeEmulator",
    "RecordedRequest",
    "canonical_quantity",
    "kube_emulator",
    "parse_label_selector",
]
