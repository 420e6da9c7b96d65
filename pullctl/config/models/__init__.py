"""The source config schema (DESIGN §2): pydantic v2 models, strict inside ``ingestion``, frozen.

Loading YAML and locating errors is ``loader.py``'s job; these models only say what is valid.
Cross-field rules raise ``FieldProblem`` so the error lands on the field at fault, not on its parent.
Validation context: ``{"target": "k8s" | "dapr"}`` selects the schedule dialect.

The package: ``base`` (the strict model, ``FieldProblem``, checks), ``request`` (and auth), ``iteration``,
``pagination``, ``policy`` (response actions, retry, rate limit), ``window`` (and incremental), ``reports``,
``template_checks``, ``ingestion``, ``source`` (``SourceConfig``, the hash, the JSON Schema).
"""

from pullctl.config.models.base import (
    DEFAULT_RETRY_STATUS,
    IDENT_RE,
    MAX_HELD_BYTES,
    MAX_STREAMED_BYTES,
    PATH_HELP,
    SOURCE_ID_RE,
    FieldProblem,
    check_path,
    check_url,
)
from pullctl.config.models.ingestion import Ingestion
from pullctl.config.models.iteration import Batch, Iteration, Records
from pullctl.config.models.pagination import (
    JOB_FIELDS,
    JOB_VARIABLE,
    PAGE_FIELDS,
    PAGE_TEMPLATED,
    PAGE_VARIABLE,
    PAGINATION_COMMON,
    PAGINATION_RULES,
    PATH_FIELDS,
    Pagination,
    PaginationRules,
    PaginationType,
)
from pullctl.config.models.policy import Dedup, Events, RateLimit, ResponseAction, Retry
from pullctl.config.models.reports import (
    JSON_PAGINATION_FIELDS,
    ROW_FORMATS,
    ROW_PAGINATION,
    CallUrl,
    CsvOptions,
    Job,
    JobCreate,
    JobDownload,
    JobPoll,
    JobStatus,
    ResponseFormat,
    ResponseFormatName,
)
from pullctl.config.models.request import (
    STATIC_AUTH,
    TOKEN_AUTH,
    GraphQL,
    Jwt,
    NamedSecret,
    OAuth2,
    Request,
    SecretName,
    Session,
    SessionLogin,
)
from pullctl.config.models.source import KNOWN_TOP_LEVEL, SourceConfig, config_hash, json_schema
from pullctl.config.models.template_checks import CREDENTIAL_FIELDS, raw_template_problems
from pullctl.config.models.window import DataWindow, Incremental, InstantValue, Span

__all__ = [
    "CREDENTIAL_FIELDS",
    "DEFAULT_RETRY_STATUS",
    "IDENT_RE",
    "JOB_FIELDS",
    "JOB_VARIABLE",
    "JSON_PAGINATION_FIELDS",
    "KNOWN_TOP_LEVEL",
    "MAX_HELD_BYTES",
    "MAX_STREAMED_BYTES",
    "PAGE_FIELDS",
    "PAGE_TEMPLATED",
    "PAGE_VARIABLE",
    "PAGINATION_COMMON",
    "PAGINATION_RULES",
    "PATH_FIELDS",
    "PATH_HELP",
    "ROW_FORMATS",
    "ROW_PAGINATION",
    "SOURCE_ID_RE",
    "STATIC_AUTH",
    "TOKEN_AUTH",
    "Batch",
    "CallUrl",
    "CsvOptions",
    "DataWindow",
    "Dedup",
    "Events",
    "FieldProblem",
    "GraphQL",
    "Incremental",
    "Ingestion",
    "InstantValue",
    "Iteration",
    "Job",
    "JobCreate",
    "JobDownload",
    "JobPoll",
    "JobStatus",
    "Jwt",
    "NamedSecret",
    "OAuth2",
    "Pagination",
    "PaginationRules",
    "PaginationType",
    "RateLimit",
    "Records",
    "Request",
    "ResponseAction",
    "ResponseFormat",
    "ResponseFormatName",
    "Retry",
    "SecretName",
    "Session",
    "SessionLogin",
    "SourceConfig",
    "Span",
    "check_path",
    "check_url",
    "config_hash",
    "json_schema",
    "raw_template_problems",
]
