"""Activation check: SSH into a freshly installed host with the service's deploy key and confirm
it booted the deployed image (deployment id, image, sha256 and root filesystem UUID all match);
it also reads whether the host booted with Secure Boot on (the SecureBoot EFI variable).

Also owns the deploy key pair (ed25519, OpenSSH format) kept in the data directory; its public
half is put into every plan's ssh_keys.
"""
from __future__ import annotations

import json
import os
import shlex
from dataclasses import dataclass
from pathlib import Path

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from metalstream.contracts.efivars import EFIVARS, SECURE_BOOT_VARIABLE, describe, secure_boot_from_od
from metalstream.errors import BadInput

DEPLOYMENT_FILE = "etc/metalstream/deployment.json"


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
            raise Unreachable(f"ssh {user}@{host}:{port}: {exc}") from exc
        secure_boot, sb_text = read_secure_boot(client, root, timeout)
        ok, message = _check_deployment(client, root, expected, timeout)
    finally:
        client.close()
    return HostCheck(ok, f"{message}; {sb_text}", secure_boot)


def _check_deployment(client: paramiko.SSHClient, root: str, expected: Expected, timeout: float) -> tuple[bool, str]:
    deployment_file = os.path.join(root, DEPLOYMENT_FILE)
    status, text = _run(client, f"cat {shlex.quote(deployment_file)}", timeout)
    if status != 0:
        return False, f"cannot read {deployment_file} on the host: {text.strip() or status}"
    status, uuid = _run(client, f"findmnt -no UUID {shlex.quote(root)}", timeout)
    if status != 0:
        return False, f"findmnt failed on the host: {uuid.strip() or status}"
    return compare(text, uuid.strip(), expected, deployment_file)


def secure_boot_command(root: str = "/") -> str:
    """Shell for the host: `bios` without efivars, `unmounted` when efivarfs is not mounted, `absent` when
    the firmware has no SecureBoot variable (off), else the variable's bytes as `od -An -tu1 -v` prints them."""
    efivars = shlex.quote(os.path.join(root, EFIVARS.lstrip("/")))
    variable = shlex.quote(os.path.join(root, EFIVARS.lstrip("/"), SECURE_BOOT_VARIABLE))
    return (f"if [ ! -d {efivars} ]; then echo bios; elif [ -e {variable} ]; then od -An -tu1 -v {variable}; "
            f"elif [ -z \"$(ls -A {efivars})\" ]; then echo unmounted; else echo absent; fi")


def secure_boot_from_answer(status: int, answer: str) -> tuple[bool | None, str]:
    """(state, phrase for the activation message) from what secure_boot_command printed."""
    word = answer.strip()
    if status != 0:
        return None, f"Secure Boot unknown (reading the SecureBoot variable failed: {word[:200] or status})"
    if word == "bios":
        return None, "booted with BIOS (no Secure Boot)"
    if word == "absent":
        return False, "Secure Boot off (the firmware has no SecureBoot variable)"
    if word == "unmounted":
        return None, "Secure Boot unknown (efivarfs is not mounted)"
    try:
        state = secure_boot_from_od(word, SECURE_BOOT_VARIABLE)
    except BadInput as exc:
        return None, f"Secure Boot unknown ({exc})"
    return state, f"Secure Boot {describe(state)}"


def read_secure_boot(client: paramiko.SSHClient, root: str, timeout: float) -> tuple[bool | None, str]:
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
