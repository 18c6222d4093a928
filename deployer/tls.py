"""Whom the agent and `metalstream install` trust over https, and how a refusal reads.

`trust(ca)` is what every request gets as `verify=`: the pinned CA file, or the system trust store.
A pinned CA also means https only (`require_https`): an installer built with `--ca` never talks
plain HTTP. A certificate that does not verify is never retried: `refusal` turns it into
TlsVerificationFailed, and the callers check every source before the first write to a disk
(`check_source_trusted`), so an untrusted service leaves the disk untouched.
"""
from __future__ import annotations

import os
import socket
import ssl
from pathlib import Path
from urllib.parse import urlparse

from metalstream.errors import BadInput, OperationFailed

Verify = bool | str  # requests' `verify=`: True (default store) or a CA file


class TlsVerificationFailed(OperationFailed):
    """The server's certificate did not verify against the trusted CA: the install is refused."""


def system_trust() -> Verify:
    """The operating system's CA bundle (SSL_CERT_FILE overrides it), else requests' own default."""
    cafile = ssl.get_default_verify_paths().cafile
    return cafile if cafile and os.path.isfile(cafile) else True


def trust(ca: str | os.PathLike | None) -> Verify:
    return os.fspath(ca) if ca is not None else system_trust()


def describe(verify: Verify) -> str:
    return f"the CA in {verify}" if isinstance(verify, str) and verify != system_trust() else "the system trust store"


def require_https(url: str, what: str, ca: str | os.PathLike | None) -> None:
    """With a pinned CA every network source must be https; local paths are fine."""
    if ca is not None and urlparse(url).scheme == "http":
        raise BadInput(f"{url} is plain http, but a CA is pinned ({ca}): with a pinned CA only https is used",
                       location=what)


def untrusted_certificate(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    """The certificate verification error somewhere inside a requests/urllib3 exception, if that is what it is."""
    seen: set[int] = set()
    pending: list[object] = [exc]
    while pending:
        current = pending.pop()
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, ssl.SSLCertVerificationError):
            return current
        pending += [*current.args, getattr(current, "reason", None), current.__cause__, current.__context__]
    return None


def refusal(url: str, cause: ssl.SSLCertVerificationError, verify: Verify) -> TlsVerificationFailed:
    parsed = urlparse(url)
    reason = cause.verify_message or cause.reason or str(cause)
    return TlsVerificationFailed(
        f"{parsed.scheme}://{parsed.netloc} is not trusted: its TLS certificate did not verify against "
        f"{describe(verify)} ({reason})", details={"url": url, "reason": reason})


def check_source_trusted(url: str, verify: Verify, *, timeout: float = 15.0) -> None:
    """A TLS handshake with an https source before anything is written; raises TlsVerificationFailed.

    Only the certificate is judged here: a source that cannot be reached at all is left to the download's
    own retries. The handshake sends no HTTP request (no token, nothing in the server's access log).
    """
    parsed = urlparse(url)
    if parsed.scheme != "https" or not parsed.hostname:
        return
    context = ssl.create_default_context(cafile=verify if isinstance(verify, str) else None)
    try:
        with socket.create_connection((parsed.hostname, parsed.port or 443), timeout=timeout) as raw:
            with context.wrap_socket(raw, server_hostname=parsed.hostname):
                pass
    except ssl.SSLCertVerificationError as exc:
        raise refusal(url, exc, verify) from None
    except OSError:
        return


def ca_option_path(ca: str | os.PathLike | None, *, location: str = "--ca") -> Path | None:
    """A CA given on the command line, checked (PEM certificates, no key); None stays None."""
    if ca is None:
        return None
    from metalstream.tls import read_ca_certificate

    read_ca_certificate(ca, location=location)
    return Path(ca).resolve()
