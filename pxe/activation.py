"""Activation check: SSH into a freshly installed host with the service's deploy key and confirm
it booted the deployed image (deployment id, image, sha256 and root filesystem UUID all match);
it also reads whether the host booted with Secure Boot on (the SecureBoot EFI variable).

Also owns the deploy key pair (ed25519, OpenSSH format) kept in the data directory; its public
half is put into every plan's ssh_keys.
"""
from __future__ import annotations

import json
import logging
import os
import shlex
from dataclasses import dataclass
from pathlib import Path

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from metalstream.contracts.efivars import (
    ABSENT,
    BIOS,
    EFIVARS,
    SECURE_BOOT_VARIABLE,
    UNMOUNTED,
    SecureBootState,
    bytes_from_od,
    classify,
    unknown,
)
from metalstream.errors import BadInput

from .plan import secure_boot_requested

DEPLOYMENT_FILE = "etc/metalstream/deployment.json"
log = logging.getLogger("metalstream.pxe.activation")


def ensure_deploy_key(path: Path) -> str:
    """Create the key pair if missing (0600, atomically) and return the public key line."""
    if not path.exists():
        key = Ed25519PrivateKey.generate()
        private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                    serialization.NoEncryption())
        public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(private)
        path.with_suffix(".pub").write_text(public.decode() + " metalstream-deploy\n")
        try:
            os.link(tmp, path)  # first writer wins when several workers start together
        except FileExistsError:
            pass
        tmp.unlink()
    return path.with_suffix(".pub").read_text().strip()


@dataclass(frozen=True)
class Expected:
    deployment_id: str
    image: str
    sha256: str
    root_uuid: str
    secure_boot: bool = False  # the deployment asked for Secure Boot: the host must have booted with it on


def expected_for(deployment, image: dict) -> Expected:
    """What the host of `deployment` (its database row) must show, `image` being its registered image."""
    return Expected(deployment["id"], image["name"], image["sha256"], deployment["root_uuid"] or "",
                    secure_boot_requested(deployment["request"], deployment["storage"]))


@dataclass(frozen=True)
class HostCheck:
    ok: bool
    message: str
    secure_boot: bool | None  # the installed system's Secure Boot state; None: BIOS, or it could not be read


class Unreachable(Exception):
    """The host does not answer on SSH yet (still rebooting): try again later."""


def split_address(address: str, default_port: int = 22) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep:
        return address, default_port
    return host.strip("[]"), int(port)


def check_host(address: str, user: str, key_path: Path, expected: Expected, root: str = "/",
               timeout: float = 15.0) -> HostCheck:
    """Whether the host runs the deployment (with the reason) and its Secure Boot state.
    Raises Unreachable if no SSH session could be opened."""
    host, port = split_address(address)
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())  # a freshly installed host has a new host key
    try:
        try:
            client.connect(host, port=port, username=user, key_filename=str(key_path), timeout=timeout,
                           banner_timeout=timeout, auth_timeout=timeout, look_for_keys=False, allow_agent=False)
        except (OSError, paramiko.SSHException) as exc:
            log.info("ssh %s@%s:%s: %s", user, host, port, exc)  # the exception's text stays in the log
            raise Unreachable(f"ssh {user}@{host}:{port}: {_reason(exc)}") from exc
        secure_boot = read_secure_boot(client, root, timeout)
        ok, message = _check_deployment(client, root, expected, timeout)
    finally:
        client.close()
    message = f"{message}; {secure_boot.text}"
    shortfall = secure_boot_shortfall(secure_boot.enabled) if expected.secure_boot else None
    if shortfall is not None:
        return HostCheck(False, f"{shortfall}; {message}", secure_boot.enabled)
    return HostCheck(ok, message, secure_boot.enabled)


def _reason(exc: BaseException) -> str:
    """What an API client may read about a failed SSH connection: the system's words for a socket error, else
    what kind of failure it was (the exception's own text can carry anything the remote side sent)."""
    if isinstance(exc, paramiko.AuthenticationException):
        return "the deploy key was not accepted"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    if isinstance(exc, TimeoutError) or "timed out" in str(exc).lower():
        return "timed out"
    return "the SSH handshake failed"


def secure_boot_shortfall(enabled: bool | None) -> str | None:
    """Why a host that was to boot with Secure Boot did not (None: it did). `enabled` as read on the host."""
    if enabled is True:
        return None
    if enabled is False:
        return "Secure Boot was requested but the installed system booted with it off"
    return "Secure Boot was requested but the installed system cannot tell whether it is on"


def _check_deployment(client: paramiko.SSHClient, root: str, expected: Expected, timeout: float) -> tuple[bool, str]:
    deployment_file = os.path.join(root, DEPLOYMENT_FILE)
    status, text = _run(client, f"cat {shlex.quote(deployment_file)}", timeout)
    if status != 0:
        log.info("cat %s on the host: exit %s: %s", deployment_file, status, text.strip())
        return False, f"the host has no readable deployment record (cat exited {status})"
    status, uuid = _run(client, f"findmnt -no UUID {shlex.quote(root)}", timeout)
    if status != 0:
        log.info("findmnt on the host: exit %s: %s", status, uuid.strip())
        return False, f"findmnt on the host exited {status}"
    return compare(text, uuid.strip(), expected, deployment_file)


def secure_boot_command(root: str = "/") -> str:
    """Shell for the host: `bios` without efivars, `unmounted` when efivarfs is not mounted, `absent` when
    the firmware has no SecureBoot variable (off), else the variable's bytes as `od -An -tu1 -v` prints them."""
    efivars = shlex.quote(os.path.join(root, EFIVARS.lstrip("/")))
    variable = shlex.quote(os.path.join(root, EFIVARS.lstrip("/"), SECURE_BOOT_VARIABLE))
    return (f"if [ ! -d {efivars} ]; then echo {BIOS}; elif [ -e {variable} ]; then od -An -tu1 -v {variable}; "
            f"elif [ -z \"$(ls -A {efivars})\" ]; then echo {UNMOUNTED}; else echo {ABSENT}; fi")


def secure_boot_from_answer(status: int, answer: str) -> SecureBootState:
    """The state from what secure_boot_command printed (its stderr when it failed: logged, never stored,
    as it may name paths on the host)."""
    if status != 0:
        log.warning("reading the SecureBoot variable on the host failed (status %s): %s", status, answer.strip()[:500])
        return unknown(f"reading the SecureBoot variable failed (status {status})")
    word = answer.strip()
    if word in (BIOS, UNMOUNTED, ABSENT):
        return classify(word, SECURE_BOOT_VARIABLE)
    try:
        return classify(bytes_from_od(word, SECURE_BOOT_VARIABLE), SECURE_BOOT_VARIABLE)
    except BadInput as exc:
        return unknown(str(exc))


def read_secure_boot(client: paramiko.SSHClient, root: str, timeout: float) -> SecureBootState:
    return secure_boot_from_answer(*_run(client, secure_boot_command(root), timeout))


def _run(client: paramiko.SSHClient, command: str, timeout: float) -> tuple[int, str]:
    _, stdout, stderr = client.exec_command(command, timeout=timeout)
    out = stdout.read().decode(errors="replace")
    status = stdout.channel.recv_exit_status()
    return status, out if status == 0 else stderr.read().decode(errors="replace")


def compare(deployment_json: str, mounted_uuid: str, expected: Expected, where: str) -> tuple[bool, str]:
    """Pure comparison of what the host says against what the service deployed."""
    try:
        found = json.loads(deployment_json)
    except json.JSONDecodeError:
        return False, f"{where} is not valid JSON"
    if not isinstance(found, dict):
        return False, f"{where} is not a JSON object"
    wanted = {"deployment_id": expected.deployment_id, "image": expected.image, "sha256": expected.sha256,
              "root_uuid": expected.root_uuid}
    for key, value in wanted.items():
        if found.get(key) != value:
            return False, f"{where}: {key} is {found.get(key)!r}, expected {value!r}"
    if mounted_uuid.lower() != expected.root_uuid.lower():
        return False, f"the mounted root filesystem has UUID {mounted_uuid!r}, expected {expected.root_uuid!r}"
    return True, f"host runs image {expected.image} (root UUID {expected.root_uuid})"
