"""PEM files for TLS, checked before anything uses them: the CA an installer pins, the service's
certificate and key. Standard library only: the installer ships this module with the agent.

Errors are BadInput naming the option, and never quote a file's content (a key must not end up in a log).
"""
from __future__ import annotations

import os
import ssl
import stat
from pathlib import Path

from .errors import BadInput

# Where `metalstream build --format installer --ca FILE` puts the CA inside the initramfs; the agent
# verifies the service with it whenever it is there.
INSTALLER_CA_PATH = Path("/etc/metalstream/installer-ca.pem")
MAX_PEM_BYTES = 1 << 20
PEM_CERTIFICATE = b"-----BEGIN CERTIFICATE-----"
PEM_PRIVATE_KEY = b"PRIVATE KEY-----"  # PRIVATE KEY, RSA/EC PRIVATE KEY, ENCRYPTED PRIVATE KEY


def _read_pem(path: str | os.PathLike, location: str) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO must not block the open
    except OSError as exc:
        raise BadInput(f"cannot read {path}: {exc.strerror}", location=location) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise BadInput(f"{path} is not a regular file", location=location)
    with os.fdopen(fd, "rb") as f:
        data = f.read(MAX_PEM_BYTES + 1)
    if len(data) > MAX_PEM_BYTES:
        raise BadInput(f"{path} is larger than {MAX_PEM_BYTES} bytes: not a PEM file", location=location)
    return data


def _check_certificates(data: bytes, path: str | os.PathLike, location: str) -> None:
    if PEM_CERTIFICATE not in data:
        raise BadInput(f"{path} holds no PEM certificate ({PEM_CERTIFICATE.decode()} ...)", location=location)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        context.load_verify_locations(cadata=data.decode("ascii"))
    except (ssl.SSLError, UnicodeDecodeError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or type(exc).__name__
        raise BadInput(f"{path} is not a valid PEM certificate file ({reason})", location=location) from None


def read_ca_certificate(path: str | os.PathLike, *, location: str = "--ca") -> bytes:
    """The PEM CA certificate(s) in PATH; BadInput if it holds none, an unreadable one, or a private key."""
    data = _read_pem(path, location)
    if PEM_PRIVATE_KEY in data:
        # The installer is served without authentication: a key in it would let anyone mint certificates.
        raise BadInput(f"{path} holds a private key: give only the CA certificate, never its key",
                       location=location)
    _check_certificates(data, path, location)
    return data


def _no_password() -> str:
    raise BadInput("the key is encrypted: the service starts unattended, give it an unencrypted key "
                   "(readable by the service's user only)", location="--tls-key")


def check_server_pair(cert: str | os.PathLike, key: str | os.PathLike) -> None:
    """The service's certificate (chain) and its private key load and belong together; BadInput otherwise."""
    _check_certificates(_read_pem(cert, "--tls-cert"), cert, "--tls-cert")
    _read_pem(key, "--tls-key")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert, key, password=_no_password)
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise BadInput(f"{key} does not belong to the certificate in {cert} (key values mismatch)",
                           location="--tls-key") from None
        raise BadInput(f"{key} is not a PEM private key ({exc.reason or 'unreadable'})",
                       location="--tls-key") from None
