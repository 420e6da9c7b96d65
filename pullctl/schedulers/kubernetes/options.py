"""What the objects depend on besides the configs (``RenderOptions``); how they are named and labelled.

Every option is validated when ``RenderOptions`` is built: a bad image or label fails before a config is read.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from pullctl import __version__
from pullctl.errors import OptionsError

DEFAULT_IMAGE = f"pullctl:{__version__}"
DEFAULT_SET = "default"
DEFAULT_SERVICE_ACCOUNT = "pullctl-runner"
DEFAULT_STORE_SECRET = "pullctl-store"
FIELD_MANAGER = "pullctl"

LABEL_NAME = "app.kubernetes.io/name"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_INSTANCE = "app.kubernetes.io/instance"
LABEL_SET = "pullctl.dev/set"
HASH_ANNOTATION = "pullctl.dev/config-hash"

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_LABEL_KEY_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
CONFIG_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")

ENV_FROM_KINDS = {"secret": "secretRef", "configmap": "configMapRef"}


@dataclass(frozen=True)
class SecretRef:
    """Where a source's secret comes from in the cluster: ``Secret`` ``name``, data key ``key``."""

    name: str
    key: str

    @classmethod
    def parse(cls, text: str) -> tuple[str, SecretRef]:
        """``SECRET_KEY=NAME[/KEY]`` -> (secret_key, SecretRef), an entry of ``RenderOptions.secret_refs``."""
        secret_key, sep, ref = text.partition("=")
        name, _, key = ref.partition("/")
        if not sep or not secret_key or not name:
            example = "e.g. github-token=platform-secrets/github"
            detail = f"'{text}': expected SECRET_KEY=SECRET_NAME[/DATA_KEY], {example}"
            raise OptionsError([("secret_refs", detail)])
        return secret_key, cls(name, key or secret_key)


@dataclass(frozen=True)
class RenderOptions:
    """What the rendered objects depend on besides the source configs. All of it feeds the config hash.
    Every value is checked here: an ``OptionsError`` names each bad field."""

    image: str = DEFAULT_IMAGE
    namespace: str | None = None
    set_name: str = DEFAULT_SET
    service_account: str = DEFAULT_SERVICE_ACCOUNT
    dapr: bool = False
    store_secret: str = DEFAULT_STORE_SECRET
    secret_refs: Mapping[str, SecretRef] = field(default_factory=dict)
    pod_labels: Mapping[str, str] = field(default_factory=dict)
    env_from: tuple[str, ...] = ()  # "secret/NAME" or "configmap/NAME": every key becomes an env variable

    def __post_init__(self) -> None:
        problems = [*self._name_problems(), *self._ref_problems(), *self._label_problems()]
        if problems:
            raise OptionsError(problems)

    def _name_problems(self) -> Iterator[tuple[str, str]]:
        if not self.image or any(c.isspace() for c in self.image):
            yield "image", f"{self.image!r}: expected an image reference like ghcr.io/org/pullctl:1.2.3"
        if self.namespace is not None and not _valid_dns_label(self.namespace):
            yield "namespace", f"{self.namespace!r}: {_DNS_LABEL_HELP}"
        if not _valid_label_value(self.set_name) or not self.set_name:
            yield "set_name", f"{self.set_name!r}: {_LABEL_VALUE_HELP}"
        if not valid_subdomain(self.service_account):
            yield "service_account", f"{self.service_account!r}: {SUBDOMAIN_HELP}"
        if not valid_subdomain(self.store_secret):
            yield "store_secret", f"{self.store_secret!r}: {SUBDOMAIN_HELP}"

    def _ref_problems(self) -> Iterator[tuple[str, str]]:
        for secret_key, ref in self.secret_refs.items():
            if not valid_subdomain(ref.name):
                yield "secret_refs", f"{secret_key}: Secret name {ref.name!r}: {SUBDOMAIN_HELP}"
            if not CONFIG_KEY.match(ref.key):
                yield "secret_refs", f"{secret_key}: key {ref.key!r}: {CONFIG_KEY_HELP}"
        for source in self.env_from:
            kind, sep, name = source.partition("/")
            if not sep or kind not in ENV_FROM_KINDS:
                yield "env_from", f"{source!r}: expected secret/NAME or configmap/NAME"
            elif not valid_subdomain(name):
                yield "env_from", f"{source!r}: {kind} name {name!r}: {SUBDOMAIN_HELP}"

    def _label_problems(self) -> Iterator[tuple[str, str]]:
        for key, value in self.pod_labels.items():
            if not _valid_label_key(key):
                yield "pod_labels", f"{key!r}: not a valid label key (prefix/name, name <= 63 chars)"
            elif key in _OWN_LABELS:
                yield "pod_labels", f"{key!r}: pullctl sets this label itself"
            if not _valid_label_value(value):
                yield "pod_labels", f"{key}={value!r}: {_LABEL_VALUE_HELP}"


def set_selector(set_name: str) -> str:
    """The label selector of the objects a set owns (what ``sync`` lists and may prune)."""
    return f"{LABEL_MANAGED_BY}=pullctl,{LABEL_SET}={set_name}"


_DNS_LABEL_HELP = "must be a lower-case DNS label (a-z, 0-9, '-'; at most 63 characters)"
SUBDOMAIN_HELP = "must be a lower-case DNS subdomain (a-z, 0-9, '-', '.'; at most 253 characters)"
_LABEL_VALUE_HELP = "must be a label value: at most 63 of A-Z a-z 0-9 '-' '_' '.', alphanumeric at both ends"
CONFIG_KEY_HELP = "must consist of A-Z a-z 0-9 '-' '_' '.'"
_OWN_LABELS = (LABEL_NAME, LABEL_MANAGED_BY, LABEL_INSTANCE, LABEL_SET)


def _valid_dns_label(value: str) -> bool:
    return len(value) <= 63 and bool(_DNS_LABEL.match(value))


def valid_subdomain(value: str) -> bool:
    return len(value) <= 253 and bool(_DNS_SUBDOMAIN.match(value))


def _valid_label_value(value: str) -> bool:
    return len(value) <= 63 and bool(_LABEL_VALUE.match(value))


def _valid_label_key(key: str) -> bool:
    prefix, _, name = key.rpartition("/")
    if prefix and not valid_subdomain(prefix):
        return False
    return len(name) <= 63 and bool(_LABEL_KEY_NAME.match(name))


def object_name(source_id: str) -> str:
    return f"pull-{source_id}"


def labels(source_id: str, options: RenderOptions) -> dict[str, str]:
    return {
        LABEL_NAME: "pullctl",
        LABEL_MANAGED_BY: "pullctl",
        LABEL_INSTANCE: source_id,
        LABEL_SET: options.set_name,
    }


def config_file_name(source_id: str) -> str:
    return f"{source_id}.yaml"
