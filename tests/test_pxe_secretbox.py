"""pxe.secretbox: the key file (made once, 0600), the environment key, and errors that never quote a key."""
from __future__ import annotations

import stat

import pytest
from cryptography.fernet import Fernet

from metalstream.errors import BadInput, OperationFailed
from pxe.secretbox import ENVIRONMENT_KEY, SecretBox


@pytest.fixture(autouse=True)
def no_environment_key(monkeypatch):
    monkeypatch.delenv(ENVIRONMENT_KEY, raising=False)


def test_key_file_is_made_once_with_mode_0600(tmp_path):
    box = SecretBox.for_data_dir(tmp_path)
    key_file = tmp_path / "secret.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = key_file.read_bytes()
    sealed = box.seal("hunter2")
    assert "hunter2" not in sealed and sealed != box.seal("hunter2")  # a fresh IV each time
    again = SecretBox.for_data_dir(tmp_path)  # a restart reads the same key
    assert key_file.read_bytes() == key and again.unseal(sealed) == "hunter2"


def test_environment_key_wins_and_no_file_is_made(tmp_path, monkeypatch):
    key = Fernet.generate_key()
    monkeypatch.setenv(ENVIRONMENT_KEY, key.decode() + "\n")
    sealed = SecretBox.for_data_dir(tmp_path).seal("pässwörd")
    assert not (tmp_path / "secret.key").exists()
    assert Fernet(key).decrypt(sealed.encode()).decode() == "pässwörd"
    replica = SecretBox.for_data_dir(tmp_path / "elsewhere")  # another replica given the same key
    assert replica.unseal(sealed) == "pässwörd"


def test_wrong_key_is_a_clear_error_without_key_or_secret(tmp_path, monkeypatch):
    sealed = SecretBox.for_data_dir(tmp_path).seal("top-secret-value")
    file_key = (tmp_path / "secret.key").read_text().strip()
    other = Fernet.generate_key().decode()
    monkeypatch.setenv(ENVIRONMENT_KEY, other)
    with pytest.raises(OperationFailed) as caught:
        SecretBox.for_data_dir(tmp_path).unseal(sealed)
    message = str(caught.value)
    assert "cannot be decrypted" in message and ENVIRONMENT_KEY in message
    for secret in (other, file_key, "top-secret-value", sealed):
        assert secret not in message


@pytest.mark.parametrize("bad", ["not-a-key", "A" * 43, Fernet.generate_key().decode()[:-4]])
def test_a_malformed_environment_key_is_refused_without_quoting_it(tmp_path, monkeypatch, bad):
    monkeypatch.setenv(ENVIRONMENT_KEY, bad)
    with pytest.raises(BadInput) as caught:
        SecretBox.for_data_dir(tmp_path)
    assert caught.value.location == ENVIRONMENT_KEY and bad not in str(caught.value)
    assert not (tmp_path / "secret.key").exists()


def test_a_damaged_key_file_is_refused_without_quoting_it(tmp_path):
    (tmp_path / "secret.key").write_text("garbage-key-text\n")
    with pytest.raises(BadInput) as caught:
        SecretBox.for_data_dir(tmp_path)
    assert "garbage-key-text" not in str(caught.value)
