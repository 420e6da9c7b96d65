"""``PULLCTL_STATE_KEY``: the key that encrypts what the store keeps of credentials (``auth_state``).

A Fernet key (AES-128-CBC with HMAC-SHA256, from ``cryptography``: authenticated, so a tampered or foreign
ciphertext is refused rather than decrypted into garbage). ``pullctl state keygen`` prints a new one; in
production it comes from a Kubernetes Secret (docs/kubernetes.md). Errors name the variable, never the key.
"""

from __future__ import annotations

from pullctl.errors import PullctlError
from pullctl.settings import Settings

STATE_KEY_VAR = "PULLCTL_STATE_KEY"


class StateKeyError(PullctlError):
    """``PULLCTL_STATE_KEY`` is missing or not a key, or a stored value was sealed with another key."""


def new_key() -> str:
    """A fresh key, as ``PULLCTL_STATE_KEY`` takes it (url-safe base64 of 32 random bytes)."""
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode()


class StateCipher:
    """Seals and opens text with one key."""

    def __init__(self, key: str) -> None:
        from cryptography.fernet import Fernet

        try:
            self._fernet = Fernet(key.strip().encode())
        except (ValueError, TypeError):
            raise StateKeyError(
                f"{STATE_KEY_VAR} is not a valid key (32 url-safe base64-encoded bytes):"
                " make one with `pullctl state keygen`"
            ) from None

    @classmethod
    def from_settings(cls, settings: Settings) -> StateCipher | None:
        """The cipher of ``PULLCTL_STATE_KEY``, or None when it is unset or empty."""
        key = settings.state_key or ""
        return cls(key) if key.strip() else None

    def seal(self, text: str) -> str:
        return self._fernet.encrypt(text.encode()).decode()

    def open(self, token: str) -> str:
        from cryptography.fernet import InvalidToken

        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken:
            raise StateKeyError(
                f"a stored credential cannot be decrypted with {STATE_KEY_VAR}: it was sealed with another"
                " key (restore that key, or reset the stored credential)"
            ) from None
