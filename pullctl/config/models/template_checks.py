"""The template checks of the config: which variables each templated field may name, and where
secrets, page values and the incremental state may go (for a model and for a raw mapping)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pullctl.config import templates
from pullctl.config.models.pagination import (
    JOB_FIELDS,
    JOB_VARIABLE,
    PAGE_FIELDS,
    PAGE_TEMPLATED,
    PAGE_VARIABLE,
)


def raw_template_problems(ingestion: Any) -> list[tuple[str, str]]:
    """(field, message) of each template field of a raw ``ingestion`` mapping that is malformed or names an
    unknown variable, for a config that failed validation elsewhere: the loader reports these together with
    the schema's errors ("every problem of every file in one pass"). Values of the wrong type are skipped
    (the schema names them)."""
    if not isinstance(ingestion, dict):
        return []

    def part(name: str) -> dict[str, Any]:
        value = ingestion.get(name)
        return value if isinstance(value, dict) else {}

    request, iteration, pagination = part("request"), part("iteration"), part("pagination")
    foreach = iteration.get("foreach") if isinstance(iteration.get("foreach"), str) else None
    incremental = isinstance(ingestion.get("incremental"), dict)
    known = known_variables(foreach, (), pagination.get("type"), incremental)
    child = iteration.get("from_source") is not None  # an ancestor's names are checked across sources
    secrets = list(part("secrets"))
    places: list[tuple[str, Any]] = [
        (f"request.{name}", request[name])
        for name in ("base_url", "parameters", "headers", "body")
        if name in request
    ]
    graphql = request.get("graphql")
    if isinstance(graphql, dict) and "variables" in graphql:
        places.append(("request.graphql.variables", graphql["variables"]))
    if iteration.get("linkage"):
        places.append(("iteration.linkage", iteration["linkage"]))
    out = []
    for where, value in places:
        if not isinstance(value, str | dict | list):
            continue
        problem = place_problem(
            where, value, known, not child, secrets, incremental=incremental, job="job" in ingestion
        )
        if problem:
            out.append((where, problem))
    return out


def known_variables(
    foreach: str | None, ancestors: Sequence[str], pagination_type: Any, incremental: bool = False
) -> dict[str, tuple[str, ...]]:
    known = dict(templates.BUILTIN_VARIABLES)
    if foreach is not None:
        known[foreach] = ()
    known.update({name: () for name in ancestors})
    if pagination_type in PAGE_TEMPLATED:
        known[PAGE_VARIABLE] = PAGE_FIELDS
    if incremental:
        known[templates.INCREMENTAL_VARIABLE] = templates.INCREMENTAL_FIELDS
    return known


def place_problem(
    where: str,
    value: Any,
    known: dict[str, tuple[str, ...]],
    all_known: bool,
    secrets: list[str],
    *,
    incremental: bool = False,
    job: bool = False,
) -> str | None:
    """What is wrong with the templates of one field; ``all_known`` False lets unknown roots pass."""
    here = {**known, JOB_VARIABLE: JOB_FIELDS} if where == "job.poll.url" else known
    try:
        fields = templates.template_fields(value)
    except templates.TemplateSyntaxError as exc:
        return str(exc)
    for fld in fields:
        if not all_known and fld.root not in here:
            continue
        problem: str | None
        if fld.root == PAGE_VARIABLE and where in ("request.base_url", "iteration.linkage", *_JOB_URLS):
            problem = (
                f"template '{{{fld.expression}}}': page templates go in request.parameters, headers"
                " or body, where the paginator advances them"
            )
        elif fld.root == templates.SECRET_VARIABLE:
            problem = secret_problem(fld, where, secrets)
        elif fld.root == templates.INCREMENTAL_VARIABLE and incremental:
            problem = _incremental_problem(fld, where) or _unknown_variable(fld, known)
        elif fld.root == templates.INCREMENTAL_VARIABLE:
            problem = (
                f"template '{{{fld.expression}}}' needs ingestion.incremental (cursor_path or"
                " token_path): the state it starts from"
            )
        elif fld.root == JOB_VARIABLE and job and fld.root not in here:
            problem = (
                f"template '{{{fld.expression}}}': the job's id is known only in job.poll.url (it"
                " comes from the create call's answer)"
            )
        else:
            problem = _unknown_variable(fld, here)
        if problem:
            return problem
    return None


CREDENTIAL_FIELDS = ("client_secret", "refresh_token", "private_key")


def one_secret(value: str) -> bool:
    """``value`` is exactly one ``{secret.NAME}`` (nothing around it)."""
    parts = [p for p in templates.parse(value).parts if p != ""]
    return len(parts) == 1 and isinstance(parts[0], templates.Field)


# Where a secret may not go, and why.
_NO_SECRETS = {
    "request.base_url": "the URL path is stored with every document and shown in logs; send the secret as a"
    " query parameter (request.parameters) or a header (request.headers), where it is masked",
    "iteration.linkage": "linkage is stored in plain text with every document",
    "job.create.url": "the URL is shown in logs; send the secret in request.headers or job.create.body",
    "job.poll.url": "the URL is shown in logs; send the secret in request.headers",
}
_JOB_URLS = ("job.create.url", "job.poll.url")


def secret_problem(fld: templates.Field, where: str, declared: list[str]) -> str | None:
    """``{secret.NAME}``: allowed in parameters, headers and body, for a NAME under ``ingestion.secrets``."""
    from difflib import get_close_matches

    if where in _NO_SECRETS:
        return f"template '{{{fld.expression}}}': a secret cannot go into {where}: {_NO_SECRETS[where]}"
    listed = f"declared in ingestion.secrets: {', '.join(sorted(declared))}"
    if len(fld.path) != 2:
        names = f" ({', '.join(sorted(declared))})" if declared else ""
        return f"template '{{{fld.expression}}}': write {{secret.NAME}}, NAME one of ingestion.secrets{names}"
    name = fld.path[1]
    if name in declared:
        return None
    if not declared:
        return (
            f"template '{{{fld.expression}}}' names undeclared secret '{name}';"
            f" declare it in ingestion.secrets as {name}: {{secret_store: STORE, secret_key: KEY}}"
        )
    hint = get_close_matches(name, declared, n=1)
    suggestion = f"; did you mean '{{secret.{hint[0]}}}'?" if hint else ""
    return f"template '{{{fld.expression}}}' names undeclared secret '{name}' ({listed}){suggestion}"


def _incremental_problem(fld: templates.Field, where: str) -> str | None:
    """``{incremental.start}``: in parameters, headers or body (left out when absent), in a known format."""
    if where in ("request.base_url", "iteration.linkage"):
        return (
            f"template '{{{fld.expression}}}': the state goes in request.parameters, headers or body, where"
            " a value with no state yet is left out"
        )
    spec = fld.format_spec
    if spec is not None and spec not in templates.EPOCH_FORMATS and "%" not in spec:
        return (
            f"template '{{{fld.expression}}}': format '{spec}' is not epoch, epoch_ms or a strftime pattern"
            " (such as %Y-%m-%dT%H:%M:%SZ)"
        )
    return None


def _unknown_variable(fld: templates.Field, known: dict[str, tuple[str, ...]]) -> str | None:
    from difflib import get_close_matches

    if fld.root not in known:
        hint = get_close_matches(fld.root, list(known), n=1)
        suggestion = f"; did you mean '{{{hint[0]}{fld.expression[len(fld.root) :]}}}'?" if hint else ""
        return (
            f"template '{{{fld.expression}}}' names unknown variable '{fld.root}'"
            f" (known: {', '.join(sorted(known))}){suggestion}"
        )
    allowed = known[fld.root]
    if allowed and (len(fld.path) != 2 or fld.path[1] not in allowed):
        return f"template '{{{fld.expression}}}': {fld.root} has the fields {', '.join(allowed)}"
    return None
