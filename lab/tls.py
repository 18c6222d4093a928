"""A throwaway CA and server certificates for the lab (`metalstream demo --tls`) and the TLS tests.

Made with the openssl command line (through metalstream.proc): EC P-256 keys, a CA restricted to
signing server certificates (pathlen 0), server certificates whose subjectAltName lists the IP
addresses and names clients connect to. Keys are written 0600 in a 0700 directory and never printed.
"""
from __future__ import annotations

import ipaddress
import re
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from metalstream import proc
from metalstream.errors import BadInput

EC_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
_DNS_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DNS_NAME = re.compile(rf"^(?=.{{1,253}}\Z){_DNS_LABEL}(\.{_DNS_LABEL})*\Z")
_COMMON_NAME = re.compile(r"^[A-Za-z0-9 ._-]{1,64}\Z")


@dataclass(frozen=True)
class KeyPair:
    """A PEM certificate and its private key."""

    cert: Path
    key: Path


def _config_text(common_name: str, extensions: dict[str, str]) -> str:
    if not _COMMON_NAME.match(common_name):
        raise BadInput(f"{common_name!r} is not a plain common name", location="common_name")
    lines = ["[req]", "distinguished_name = dn", "prompt = no", "", "[dn]", f"CN = {common_name}", "", "[ext]"]
    lines += [f"{key} = {value}" for key, value in extensions.items()]
    return "\n".join(lines) + "\n"


def _private_dir(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    return directory


def _subject_alt_names(ip_addresses: Sequence[str], dns_names: Sequence[str]) -> str:
    names = [f"IP:{ipaddress.ip_address(ip)}" for ip in ip_addresses]
    for name in dns_names:
        if not _DNS_NAME.match(name):
            raise BadInput(f"{name!r} is not a DNS name", location="dns_names")
        names.append(f"DNS:{name}")
    if not names:
        raise BadInput("a server certificate needs at least one IP address or DNS name", location="subjectAltName")
    return ", ".join(names)


def make_ca(directory: Path, *, name: str = "metalstream lab CA", days: int = 365) -> KeyPair:
    """A new self-signed CA in DIRECTORY (ca.pem, ca.key)."""
    directory = _private_dir(Path(directory))
    pair = KeyPair(directory / "ca.pem", directory / "ca.key")
    config = _config_text(name, {"basicConstraints": "critical, CA:TRUE, pathlen:0",
                                 "keyUsage": "critical, keyCertSign, cRLSign",
                                 "subjectKeyIdentifier": "hash"})
    with tempfile.NamedTemporaryFile("w", prefix="metalstream-ca-", suffix=".cnf") as cnf:
        cnf.write(config)
        cnf.flush()
        proc.run(["openssl", "req", "-x509", "-config", cnf.name, "-extensions", "ext", *EC_KEY,
                  "-keyout", pair.key, "-out", pair.cert, "-days", str(days)], timeout=60)
    pair.key.chmod(0o600)
    return pair


def issue_server_cert(ca: KeyPair, directory: Path, *, ip_addresses: Sequence[str] = (),
                      dns_names: Sequence[str] = (), name: str = "server", days: int = 30) -> KeyPair:
    """A server certificate signed by CA for the given addresses (subjectAltName): NAME.pem, NAME.key."""
    directory = _private_dir(Path(directory))
    pair = KeyPair(directory / f"{name}.pem", directory / f"{name}.key")
    common_name = next(iter([*ip_addresses, *dns_names]), name)
    config = _config_text(common_name, {"basicConstraints": "critical, CA:FALSE",
                                        "keyUsage": "critical, digitalSignature",
                                        "extendedKeyUsage": "serverAuth",
                                        "subjectAltName": _subject_alt_names(ip_addresses, dns_names),
                                        "subjectKeyIdentifier": "hash",
                                        "authorityKeyIdentifier": "keyid:always"})
    with tempfile.TemporaryDirectory(prefix="metalstream-cert-") as scratch:
        cnf, csr = Path(scratch) / "server.cnf", Path(scratch) / "server.csr"
        cnf.write_text(config)
        proc.run(["openssl", "req", "-new", "-config", cnf, *EC_KEY, "-keyout", pair.key, "-out", csr], timeout=60)
        proc.run(["openssl", "x509", "-req", "-in", csr, "-CA", ca.cert, "-CAkey", ca.key,
                  "-set_serial", f"0x{secrets.token_hex(16)}", "-days", str(days), "-extfile", cnf,
                  "-extensions", "ext", "-out", pair.cert], timeout=60)
    pair.key.chmod(0o600)
    return pair


def valid_for(cert: Path, seconds: int) -> bool:
    """Whether CERT exists and is still valid `seconds` from now."""
    if not Path(cert).is_file():
        return False
    return proc.run(["openssl", "x509", "-checkend", str(seconds), "-noout", "-in", cert], check=False,
                    timeout=30).returncode == 0


def lab_ca(directory: Path) -> KeyPair:
    """The lab's CA in DIRECTORY: reused while valid for another week (installers built with it stay
    usable), otherwise made anew."""
    pair = KeyPair(Path(directory) / "ca.pem", Path(directory) / "ca.key")
    if pair.key.is_file() and valid_for(pair.cert, 7 * 86400):
        return pair
    return make_ca(directory)
