"""Masking of secret values wherever text leaves pullctl: logs, errors, run records, URLs.

A secret is masked in its plain form, URL-encoded (both ``quote`` and ``quote_plus``, and as a query value
goes on the wire: aiohttp's yarl un-escapes the characters a query may hold as they are, so a server echoes
``a/b%2Bc`` for ``a%2Fb%2Bc``) and base64-encoded (as in a Basic ``Authorization`` header), so none of the
forms a value travels in can leak.

Every secret form lives here: a value (``Redactor.add``: API keys, tokens, assertions, private keys), a
``user:password`` pair and its password alone (``add_userinfo``: Basic auth, a proxy's credentials), and the
password inside a URL (``mask_url``, ``url_redactor``: store, config store, event sink and MCP URLs).
"""

from __future__ import annotations

import base64
import re
from urllib.parse import quote, quote_plus, unquote

MASK = "***"
# What yarl (under the aiohttp transport) leaves un-escaped in a query value.
WIRE_SAFE = "!$'()*,/:?@"


class Redactor:
    def __init__(self, secrets: list[str] | None = None) -> None:
        self._forms: list[str] = []
        for secret in secrets or []:
            self.add(secret)

    def add(self, secret: str) -> None:
        if len(secret) < 3:  # too short to mask without mangling ordinary text; never a real credential
            return
        forms = {
            secret,
            quote(secret, safe=""),
            quote_plus(secret),
            quote_plus(secret, safe=WIRE_SAFE),
            base64.b64encode(secret.encode()).decode(),
        }
        for form in forms:
            if form not in self._forms:
                self._forms.append(form)
        self._forms.sort(key=len, reverse=True)

    def add_userinfo(self, userinfo: str) -> None:
        """``user:password`` (a Basic auth secret, a proxy's credentials): the pair, and the password alone
        (a server may echo either half)."""
        self.add(userinfo)
        self.add(userinfo.partition(":")[2])

    def __call__(self, text: str) -> str:
        for form in self._forms:
            if form in text:
                text = text.replace(form, MASK)
        return text

    def __bool__(self) -> bool:
        return bool(self._forms)


# -- passwords in URLs (store, config store, event sink, MCP server URLs) --------------------------------

_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://\S+")
_USER = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]+:")


def _password_span(url: str) -> tuple[int, int] | None:
    """Where the password of ``scheme://user:password@host…`` is, also when it is not percent-encoded.

    The userinfo ends at the last ``@`` before the query, or, when no ``@`` comes before a ``?``, at the
    last ``@`` of all: a ``/``, ``?`` or ``@`` pasted into a password unencoded stays inside it.
    """
    user = _USER.match(url)
    if user is None:
        return None
    start = user.end()
    query = url.find("?", start)
    end = url.rfind("@", start, query) if query >= 0 else -1
    if end < 0:
        end = url.rfind("@", start)
    return (start, end) if end > start else None


def url_password(url: str) -> str | None:
    """The password in ``url`` as written there (percent-encoded or not), or None."""
    span = _password_span(url)
    return url[span[0] : span[1]] if span else None


def url_redactor(url: str) -> Redactor:
    """A ``Redactor`` for the password of ``url``: as written, decoded, and in their encoded forms."""
    redact = Redactor()
    password = url_password(url)
    if password:
        redact.add(password)
        redact.add(unquote(password))
    return redact


def mask_url(text: str) -> str:
    """``mongodb://user:secret@host`` -> ``mongodb://user:***@host``, for every URL in ``text``."""

    def mask(match: re.Match[str]) -> str:
        url = match.group()
        span = _password_span(url)
        return f"{url[: span[0]]}{MASK}{url[span[1] :]}" if span else url

    return _URL.sub(mask, text)
