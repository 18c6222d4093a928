"""Secrets at rest (BMC passwords, webhook secrets): sealed with Fernet (AES-128-CBC + HMAC-SHA256, from
`cryptography`), so the database holds only ciphertext.

The key is METALSTREAM_SECRET_KEY (a Fernet key: 32 url-safe base64 bytes) when set — every replica of a
service on one database must be given the same one — else DATA_DIR/secret.key, made on first use with
mode 0600. Errors never quote a key or a secret.
"""
from __future__ import annotations

import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from metalstream.errors import BadInput, OperationFailed

ENVIRONMENT_KEY = "METALSTREAM_SECRET_KEY"


class SecretBox:
    def __init__(self, key: bytes):
        try:
            self._fernet = Fernet(key)
        except (ValueError, TypeError):
            raise BadInput("is not a Fernet key (32 url-safe base64-encoded bytes; make one with "
                           "`python3 -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'`)",
                           location=ENVIRONMENT_KEY) from None

    @classmethod
    def for_data_dir(cls, data_dir: Path) -> "SecretBox":
        given = os.environ.get(ENVIRONMENT_KEY)
        if given:
            return cls(given.strip().encode())
        path = Path(data_dir) / "secret.key"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return cls(path.read_bytes().strip())
        with os.fdopen(fd, "wb") as out:
            out.write(Fernet.generate_key() + b"\n")
        return cls(path.read_bytes().strip())

    def seal(self, secret: str) -> str:
        return self._fernet.encrypt(secret.encode()).decode()

    def unseal(self, sealed: str) -> str:
        try:
            return self._fernet.decrypt(sealed.encode()).decode()
        except InvalidToken:
            raise OperationFailed("a stored secret cannot be decrypted with this service's key (was "
                                  f"{ENVIRONMENT_KEY} or DATA_DIR/secret.key changed?)") from None
