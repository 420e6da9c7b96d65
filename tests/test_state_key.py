"""``PULLCTL_STATE_KEY``: keys from ``pullctl state keygen``, sealing, and the errors that name the variable."""

from __future__ import annotations

import pytest

from pullctl.pipeline.state_key import STATE_KEY_VAR, StateCipher, StateKeyError, new_key
from pullctl.settings import Settings
from tests.conftest import Cli


def test_keygen_prints_a_key_the_cipher_takes(cli: Cli) -> None:
    result = cli("state", "keygen")
    assert result.exit_code == 0
    key = result.stdout.strip()
    assert len(key) == 44 and key != new_key()
    cipher = StateCipher(key)
    sealed = cipher.seal("rt-secret-1")
    assert "rt-secret-1" not in sealed
    assert cipher.open(sealed) == "rt-secret-1"


def test_no_key_in_the_environment_is_no_cipher() -> None:
    assert StateCipher.from_settings(Settings.from_env({})) is None
    assert StateCipher.from_settings(Settings.from_env({STATE_KEY_VAR: "  "})) is None
    assert StateCipher.from_settings(Settings.from_env({STATE_KEY_VAR: new_key()})) is not None


def test_a_malformed_key_names_the_variable_and_the_fix_not_the_value() -> None:
    with pytest.raises(StateKeyError) as caught:
        StateCipher.from_settings(Settings.from_env({STATE_KEY_VAR: "not-a-key-hunter2"}))
    assert caught.value.message == (
        "PULLCTL_STATE_KEY is not a valid key (32 url-safe base64-encoded bytes):"
        " make one with `pullctl state keygen`"
    )


def test_a_value_sealed_with_another_key_is_refused_not_garbled() -> None:
    sealed = StateCipher(new_key()).seal("rt-secret-1")
    with pytest.raises(
        StateKeyError, match="cannot be decrypted with PULLCTL_STATE_KEY: it was sealed with another"
    ):
        StateCipher(new_key()).open(sealed)
