"""The deploy plan (docs/contracts.md §2): parsed and validated before anything touches a disk.

`Plan.from_json(data)` refuses unknown fields, malformed values and control characters with a
BadInput whose location is the JSON field (`plan.image.sha256`). `local_plan(...)` builds the
same Plan for `metalstream install IMAGE.json|URL` from an image manifest.
"""
from __future__ import annotations

import ipaddress
import json
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlparse

from .errors import BadInput
from .spec import ClearPart, DeploySpec, NetworkDevice

PLAN_FORMAT = "metalstream-plan/1"
MANIFEST_FORMAT = "metalstream-image/1"
BOOT_MODES = ("bios", "uefi", "both")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_HOST_LABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_CRYPT = re.compile(r"(\$[0-9a-z]+\$[^:\s]+|[!*][^:\s]*)")
_SSH_KEY = re.compile(r"(ssh-|ecdsa-|sk-)[a-z0-9@.-]+ [A-Za-z0-9+/=]+( [^\x00-\x1f\x7f]*)?")
_TOP_FIELDS = ("format", "deployment_id", "image", "disk_hints", "boot_mode", "storage", "hostname", "network",
               "root_password_hash", "ssh_keys", "kernel_args", "report")


@dataclass(frozen=True)
class Kernel:
    version: str
    kernel: str  # absolute path inside the image
    initramfs: str


@dataclass(frozen=True)
class ImageRef:
    name: str
    url: str  # http(s):// or file:// URL or a local path of the tar.zst
    sha256: str
    size: int | None
    manifest: dict | None = None

    @property
    def kernels(self) -> list[Kernel]:
        return [Kernel(k["version"], k["kernel"], k["initramfs"]) for k in (self.manifest or {}).get("kernels", [])]

    @property
    def uncompressed_size(self) -> int:
        return int((self.manifest or {}).get("uncompressed_size") or 0)


@dataclass(frozen=True)
class DiskHints:
    serial: str | None = None
    wwn: str | None = None
    by_path: str | None = None
    model: str | None = None
    name: str | None = None
    min_size_gib: float | None = None
    max_size_gib: float | None = None
    rotational: bool | None = None

    def given(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass
class Plan:
    image: ImageRef
    deployment_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    disk_hints: DiskHints = field(default_factory=DiskHints)
    boot_mode: str = "both"
    storage: DeploySpec | None = None
    hostname: str | None = None
    network: list[NetworkDevice] = field(default_factory=list)
    root_password_hash: str | None = None
    ssh_keys: list[str] = field(default_factory=list)
    kernel_args: str = ""
    report: dict | None = None

    @classmethod
    def from_json(cls, data: Any) -> "Plan":
        return _parse_plan(data)

    def to_json(self) -> dict:
        return {
            "format": PLAN_FORMAT,
            "deployment_id": self.deployment_id,
            "image": {"name": self.image.name, "url": self.image.url, "sha256": self.image.sha256,
                      "size": self.image.size, "manifest": self.image.manifest},
            "disk_hints": dict(self.disk_hints.__dict__),
            "boot_mode": self.boot_mode,
            "storage": self.storage.to_dict() if self.storage else None,
            "hostname": self.hostname,
            "network": [n.__dict__ for n in self.network],
            "root_password_hash": self.root_password_hash,
            "ssh_keys": list(self.ssh_keys),
            "kernel_args": self.kernel_args,
            "report": self.report,
        }

    @property
    def wipe_allowed(self) -> bool:
        """The plan allows destroying an existing partition table (clearpart --all or zerombr)."""
        s = self.storage
        return bool(s and (s.zerombr or (s.clearpart and s.clearpart.mode == "all")))


def _bad(location: str, message: str) -> BadInput:
    return BadInput(message, location=location)


def _expect(data: Any, kind: type | tuple, location: str, *, optional: bool = False) -> Any:
    if data is None and optional:
        return None
    if isinstance(data, bool) and kind in (int, float, (int, float)):
        raise _bad(location, f"expected a number, got {json.dumps(data)}")
    if not isinstance(data, kind):
        names = {dict: "an object", list: "a list", str: "a string", int: "an integer", bool: "true/false"}
        want = names.get(kind, "a number") if isinstance(kind, type) else "a number"
        raise _bad(location, f"expected {want}, got {json.dumps(data)[:60]}")
    return data


def _text(data: Any, location: str, *, optional: bool = True) -> str | None:
    value = _expect(data, str, location, optional=optional)
    if value is not None and _CONTROL.search(value):
        raise _bad(location, "contains a control character (newline, tab, escape...)")
    return value


def _unknown(data: dict, allowed: tuple[str, ...], location: str) -> None:
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise _bad(f"{location}.{unknown[0]}", f"unknown field (allowed: {', '.join(allowed)})")


def validate_hostname(value: str, location: str) -> str:
    if len(value) > 253 or not all(_HOST_LABEL.fullmatch(label) for label in value.split(".")):
        raise _bad(location, f"{value!r} is not a valid host name (letters, digits, '-', dot-separated labels)")
    return value


def validate_kernel_args(value: str, location: str) -> str:
    if _CONTROL.search(value):
        raise _bad(location, "contains a control character (newline, tab, escape...)")
    return value.strip()


def validate_password_hash(value: str, location: str) -> str:
    if not _CRYPT.fullmatch(value):
        raise _bad(location, "expected a crypt(3) hash such as $6$salt$hash (or '!' to lock), never a plain password")
    return value


def validate_ssh_key(value: Any, location: str) -> str:
    if not isinstance(value, str) or not _SSH_KEY.fullmatch(value.strip()):
        raise _bad(location, "expected one public key line: 'TYPE BASE64 [comment]'")
    return value.strip()


def _parse_manifest(data: Any, location: str) -> dict | None:
    if data is None:
        return None
    _expect(data, dict, location)
    if data.get("format") != MANIFEST_FORMAT:
        raise _bad(f"{location}.format", f"unknown manifest format {data.get('format')!r} (expected {MANIFEST_FORMAT})")
    kernels = _expect(data.get("kernels", []), list, f"{location}.kernels")
    for i, k in enumerate(kernels):
        _expect(k, dict, f"{location}.kernels[{i}]")
        for key in ("version", "kernel", "initramfs"):
            value = _text(k.get(key), f"{location}.kernels[{i}].{key}", optional=False)
            if key != "version" and not value.startswith("/"):
                raise _bad(f"{location}.kernels[{i}].{key}", "must be an absolute path inside the image")
    return data


def _parse_image(data: Any, location: str = "plan.image") -> ImageRef:
    _expect(data, dict, location)
    _unknown(data, ("name", "url", "sha256", "size", "manifest"), location)
    name = _text(data.get("name"), f"{location}.name", optional=False)
    url = _text(data.get("url"), f"{location}.url", optional=False)
    if urlparse(url).scheme not in ("http", "https", "file", ""):
        raise _bad(f"{location}.url", f"unsupported URL scheme in {url!r} (http, https, file or a path)")
    sha = _expect(data.get("sha256"), str, f"{location}.sha256")
    if not _SHA256.fullmatch(sha):
        raise _bad(f"{location}.sha256", "expected 64 lowercase hex digits")
    size = _expect(data.get("size"), int, f"{location}.size", optional=True)
    if size is not None and size <= 0:
        raise _bad(f"{location}.size", "must be positive")
    manifest = _parse_manifest(data.get("manifest"), f"{location}.manifest")
    return ImageRef(name=name, url=url, sha256=sha, size=size, manifest=manifest)


def _parse_hints(data: Any, location: str = "plan.disk_hints") -> DiskHints:
    if data is None:
        return DiskHints()
    _expect(data, dict, location)
    _unknown(data, tuple(DiskHints.__dataclass_fields__), location)
    values: dict[str, Any] = {}
    for key in ("serial", "wwn", "by_path", "model", "name"):
        values[key] = _text(data.get(key), f"{location}.{key}")
    for key in ("min_size_gib", "max_size_gib"):
        value = _expect(data.get(key), (int, float), f"{location}.{key}", optional=True)
        if value is not None and value < 0:
            raise _bad(f"{location}.{key}", "must not be negative")
        values[key] = value
    values["rotational"] = _expect(data.get("rotational"), bool, f"{location}.rotational", optional=True)
    return DiskHints(**values)


def _parse_network(data: Any, location: str = "plan.network") -> list[NetworkDevice]:
    if data is None:
        return []
    _expect(data, list, location)
    devices = []
    for i, item in enumerate(data):
        where = f"{location}[{i}]"
        _expect(item, dict, where)
        _unknown(item, tuple(NetworkDevice.__dataclass_fields__), where)
        for key, value in item.items():
            if isinstance(value, str):
                _text(value, f"{where}.{key}")
        device = NetworkDevice(**{k: v for k, v in item.items()})
        devices.append(validate_network_device(device, where))
    return devices


def validate_network_device(device: NetworkDevice, where: str) -> NetworkDevice:
    if device.bootproto not in ("dhcp", "static"):
        raise _bad(f"{where}.bootproto", f"expected 'dhcp' or 'static', got {device.bootproto!r}")
    if device.bootproto == "static":
        if not device.ip:
            raise _bad(f"{where}.ip", "a static address needs ip (and netmask or ip/prefix)")
        try:
            address = device.ip if "/" in device.ip else f"{device.ip}/{device.netmask or '24'}"
            ipaddress.ip_interface(address)
            if device.gateway:
                ipaddress.ip_address(device.gateway)
            for ns in device.nameservers:
                ipaddress.ip_address(ns)
        except ValueError as exc:
            raise _bad(where, f"bad address: {exc}") from None
    return device


def _parse_storage(data: Any, location: str = "plan.storage") -> DeploySpec | None:
    if data is None:
        return None
    _expect(data, dict, location)
    try:
        spec = DeploySpec.from_dict(data)
    except KeyError as exc:
        raise _bad(location, str(exc.args[0])) from None
    except TypeError as exc:
        raise _bad(location, f"malformed deploy spec: {exc}") from None
    if spec.clearpart and spec.clearpart.mode not in ("none", "all", "linux", "list"):
        raise _bad(f"{location}.clearpart.mode", f"unknown mode {spec.clearpart.mode!r}")
    for i, part in enumerate(spec.partitions):
        if not isinstance(part.mountpoint, str) or _CONTROL.search(part.mountpoint):
            raise _bad(f"{location}.partitions[{i}].mountpoint", "expected a mount point string")
    return spec


def _parse_plan(data: Any) -> Plan:
    _expect(data, dict, "plan")
    _unknown(data, _TOP_FIELDS, "plan")
    if data.get("format") != PLAN_FORMAT:
        raise _bad("plan.format", f"unknown plan format {data.get('format')!r} (expected {PLAN_FORMAT})")
    deployment_id = _text(data.get("deployment_id"), "plan.deployment_id", optional=False)
    if not deployment_id:
        raise _bad("plan.deployment_id", "must not be empty")
    boot_mode = data.get("boot_mode") or "both"
    if boot_mode not in BOOT_MODES:
        raise _bad("plan.boot_mode", f"expected one of {', '.join(BOOT_MODES)}, got {json.dumps(boot_mode)}")
    hostname = _text(data.get("hostname"), "plan.hostname")
    if hostname is not None:
        validate_hostname(hostname, "plan.hostname")
    password = _text(data.get("root_password_hash"), "plan.root_password_hash")
    if password is not None:
        validate_password_hash(password, "plan.root_password_hash")
    keys = _expect(data.get("ssh_keys") or [], list, "plan.ssh_keys")
    kernel_args = _text(data.get("kernel_args"), "plan.kernel_args") or ""
    report = _expect(data.get("report"), dict, "plan.report", optional=True)
    return Plan(
        deployment_id=deployment_id,
        image=_parse_image(data.get("image")),
        disk_hints=_parse_hints(data.get("disk_hints")),
        boot_mode=boot_mode,
        storage=_parse_storage(data.get("storage")),
        hostname=hostname,
        network=_parse_network(data.get("network")),
        root_password_hash=password,
        ssh_keys=[validate_ssh_key(k, f"plan.ssh_keys[{i}]") for i, k in enumerate(keys)],
        kernel_args=validate_kernel_args(kernel_args, "plan.kernel_args"),
        report=report,
    )


def load_plan_file(path: Path) -> Plan:
    try:
        data = json.loads(Path(path).read_text())
    except OSError as exc:
        raise BadInput(f"cannot read plan: {exc.strerror}", location=str(path)) from None
    except json.JSONDecodeError as exc:
        raise BadInput(f"not valid JSON: {exc.msg}", location=f"{path}:{exc.lineno}") from None
    try:
        return Plan.from_json(data)
    except BadInput as exc:
        raise BadInput(exc.reason, location=f"{path}: {exc.location}") from None


def read_manifest(source: str) -> tuple[dict, str]:
    """Read an image manifest from a path, file:// or http(s):// URL; return it and the tarball's URL."""
    parsed = urlparse(source)
    if parsed.scheme in ("http", "https"):
        import requests

        try:
            response = requests.get(source, timeout=30)
            response.raise_for_status()
            data = response.json()
        except (requests.RequestException, ValueError) as exc:
            raise BadInput(f"cannot fetch image manifest: {exc}", location=source) from None
        location = source
    else:
        path = Path(parsed.path if parsed.scheme == "file" else source)
        try:
            data = json.loads(path.read_text())
        except OSError as exc:
            raise BadInput(f"cannot read image manifest: {exc.strerror}", location=str(path)) from None
        except json.JSONDecodeError as exc:
            raise BadInput(f"not valid JSON: {exc.msg}", location=f"{path}:{exc.lineno}") from None
        location = str(path)
    manifest = _parse_manifest(data, location)
    tarball = _text(manifest.get("tarball"), f"{location}: tarball", optional=False)
    if "/" in tarball:
        raise _bad(f"{location}: tarball", "must be a file name beside the manifest")
    if parsed.scheme in ("http", "https"):
        return manifest, urljoin(source, tarball)
    return manifest, str(path.resolve().parent / tarball)


def local_plan(source: str, *, boot_mode: str = "both", hostname: str | None = None,
               ssh_keys: list[str] | tuple[str, ...] = (), root_password_hash: str | None = None,
               kernel_args: str = "", wipe: bool = False) -> Plan:
    """The plan `metalstream install IMAGE.json|URL` runs when no --plan file is given."""
    manifest, url = read_manifest(source)
    sha = manifest.get("sha256")
    if not isinstance(sha, str) or not _SHA256.fullmatch(sha):
        raise _bad(f"{source}: sha256", "expected 64 lowercase hex digits")
    size = manifest.get("size")
    if hostname is not None:
        validate_hostname(hostname, "--hostname")
    if root_password_hash is not None:
        validate_password_hash(root_password_hash, "--root-password-hash")
    storage = DeploySpec(clearpart=ClearPart(mode="all", initlabel=True)) if wipe else None
    return Plan(
        image=ImageRef(name=str(manifest.get("name") or "image"), url=url, sha256=sha,
                       size=size if isinstance(size, int) else None, manifest=manifest),
        boot_mode=boot_mode,
        storage=storage,
        hostname=hostname,
        ssh_keys=[validate_ssh_key(k, f"--ssh-key[{i}]") for i, k in enumerate(ssh_keys)],
        root_password_hash=root_password_hash,
        kernel_args=validate_kernel_args(kernel_args, "--kernel-args"),
    )
