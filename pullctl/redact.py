"""Masking of secret values wherever text leaves pullctl: logs, errors, run records, URLs.

A secret is masked in its plain form, URL-encoded (both ``quote`` and ``quote_plus``, and as a query value
goes on the wire: aiohttp's yarl un-escapes the characters a query may hold as they are, so a server echoes
``a/b%2Bc`` for ``a%2Fb%2Bc``) and base64-encoded (as in a Basic ``Authorization`` header), so none of the
forms a value travels in can leak.
"""

from __future__ import annotations

import base64
from urllib.parse import quote, quote_plus

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

    def __call__(self, text: str) -> str:
        for form in self._forms:
            if form in text:
                text = text.replace(form, MASK)
        return text

    def __bool__(self) -> bool:
        return bool(self._forms)
