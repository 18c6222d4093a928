"""Where the agent's plan comes from when no service hands it one: a plan file, or an image manifest
plus command-line options.

The plan itself (its fields, their rules, reading and writing it) is the contract in
`metalstream.contracts.plan`; this module only finds the documents, reports problems at their path
or URL, and applies `metalstream install`'s options through the same field rules the API uses.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from urllib.parse import urljoin, urlparse

from metalstream.contracts import rules
from metalstream.contracts.deployspec import ClearPart, DeploySpec
from metalstream.contracts.manifests import load_document, read_image_manifest
from metalstream.contracts.plan import ImageRef, Plan, read_passphrase, read_ssh_keys
from metalstream.errors import BadInput


def load_plan_file(path: Path) -> Plan:
    data = load_document(path)
    try:
        return Plan.from_json(data)
    except BadInput as exc:
        raise exc.relocated(f"{path}: {exc.location}") from None


def read_manifest(source: str, *, verify: bool | str = True) -> tuple[dict, str]:
    """Read an image manifest from a path, file:// or http(s):// URL (certificate checked with `verify`,
    deployer.tls.trust); return it and the tarball's URL."""
    parsed = urlparse(source)
    if parsed.scheme in ("http", "https"):
        import requests

        from .tls import refusal, untrusted_certificate

        try:
            response = requests.get(source, timeout=30, verify=verify)
            response.raise_for_status()
            data = response.json()
        except (requests.RequestException, ValueError) as exc:
            if (cause := untrusted_certificate(exc)) is not None:
                raise refusal(source, cause, verify) from None
            raise BadInput(f"cannot fetch image manifest: {exc}", location=source) from None
        manifest = read_image_manifest(data, source)
        return manifest, urljoin(source, manifest["tarball"])
    path = Path(parsed.path if parsed.scheme == "file" else source)
    manifest = read_image_manifest(load_document(path), str(path))
    return manifest, str(path.resolve().parent / manifest["tarball"])


def with_options(plan: Plan, *, boot_mode: str | None = None, hostname: str | None = None,
                 ssh_keys: list[str] | tuple[str, ...] = (), root_password_hash: str | None = None,
                 kernel_args: str | None = None, wipe: bool = False, encryption_passphrase: str | None = None) -> Plan:
    """`plan` with `metalstream install`'s options applied; each option checked by the plan's own rule
    (`encryption_passphrase`: read from --encryption-passphrase-file)."""
    changes: dict = {"ssh_keys": [*plan.ssh_keys, *read_ssh_keys(list(ssh_keys), "--ssh-key")]}
    if boot_mode is not None:
        changes["boot_mode"] = rules.boot_mode(boot_mode, "--boot")
    if hostname is not None:
        changes["hostname"] = rules.hostname(hostname, "--hostname")
    if root_password_hash is not None:
        changes["root_password_hash"] = rules.password_hash(root_password_hash, "--root-password-hash")
    if kernel_args is not None:
        changes["kernel_args"] = rules.kernel_args(kernel_args, "--kernel-args")
    if encryption_passphrase is not None:
        changes["encryption_passphrase"] = read_passphrase(encryption_passphrase, "--encryption-passphrase-file")
    if wipe:
        changes["storage"] = dataclasses.replace(plan.storage or DeploySpec(),
                                                 clearpart=ClearPart(mode="all", initlabel=True))
    return dataclasses.replace(plan, **changes)


def memory_bytes(meminfo: Path = Path("/proc/meminfo")) -> int | None:
    """The machine's memory (MemTotal), which sizes swap for `part swap --recommended`; None if unreadable."""
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024  # kB
    except (OSError, ValueError, IndexError):
        return None
    return None


def local_plan(source: str, *, verify: bool | str = True, **options) -> Plan:
    """The plan `metalstream install IMAGE.json|URL` runs when no --plan file is given (options: `with_options`)."""
    manifest, url = read_manifest(source, verify=verify)
    image = ImageRef(name=manifest["name"], url=url, sha256=manifest["sha256"], size=manifest["size"],
                     manifest=manifest)
    return with_options(Plan(image=image), **options)
