"""The deploy plan (docs/contracts.md §2): what the service tells the agent to install, and how.

`Plan` is the typed form; `Plan.to_json()` writes the document and `Plan.from_json(data)` reads
one, refusing unknown fields, malformed values and control characters with a BadInput located at
the JSON field (`plan.image.sha256`). Every field goes through the shared rules, so a plan the
service writes is one the agent accepts, and `metalstream install` accepts what the API does.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from ..errors import BadInput
from . import rules, secureboot
from .deployspec import DeploySpec
from .network import NetworkDevice, check_network, check_network_device, read_network_device  # noqa: F401
from .formats import PLAN, PLAN_FORMAT, check_format
from .manifests import read_image_manifest

TOP_FIELDS = ("format", "deployment_id", "image", "disk_hints", "boot_mode", "storage", "hostname", "network",
              "root_password_hash", "ssh_keys", "kernel_args", "report", "secure_boot", "reboot",
              "disks", "encryption")
ENCRYPTION_FIELDS = ("passphrase",)
MAX_DISKS = 64
MAX_PASSPHRASE = 512
REBOOT_FIELDS = ("method",)
REBOOT_METHODS = ("firmware", "kexec")  # firmware: the machine resets; kexec: the installer jumps into the installed kernel
IMAGE_FIELDS = ("name", "url", "urls", "sha256", "size", "manifest")
HINT_TEXT_FIELDS = ("serial", "wwn", "by_path", "model", "name")
HINT_SIZE_FIELDS = ("min_size_gib", "max_size_gib")
DISK_HINT_FIELDS = (*HINT_TEXT_FIELDS, *HINT_SIZE_FIELDS, "rotational")
MAX_DISK_GIB = 1 << 30  # an exbibyte: a bound, not a limit anyone meets
MAX_SSH_KEYS = 100
URL_SCHEMES = ("http", "https", "file", "")
MAX_IMAGE_URLS = 16


@dataclass(frozen=True)
class Kernel:
    version: str
    kernel: str  # absolute path inside the image
    initramfs: str


@dataclass(frozen=True)
class ImageRef:
    """The image and where to get it: `urls` are sources of the same bytes, preferred first (`url` is the
    first); the agent fails over between them and `sha256` judges what it got."""

    name: str
    url: str  # http(s):// or file:// URL or a local path of the tar.zst
    sha256: str
    size: int | None
    manifest: dict | None = None
    urls: tuple[str, ...] = ()  # every source, `url` first; left empty: `url` alone

    def __post_init__(self) -> None:
        urls = tuple(self.urls) or (self.url,)
        if urls[0] != self.url:
            raise ValueError(f"ImageRef.urls must start with url {self.url!r}, got {urls[0]!r}")
        object.__setattr__(self, "urls", urls)

    def to_json(self) -> dict[str, Any]:
        """`urls` only with more than one source: a single-source plan is what 1.0 agents read too."""
        document: dict[str, Any] = {"name": self.name, "url": self.url}
        if len(self.urls) > 1:
            document["urls"] = list(self.urls)
        return {**document, "sha256": self.sha256, "size": self.size, "manifest": self.manifest}

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
        return {k: v for k, v in self.to_json().items() if v is not None}

    def to_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in DISK_HINT_FIELDS}

    @classmethod
    def from_json(cls, data: Any, location: str = "disk_hints") -> "DiskHints":
        """Disk hints (all optional): text without control characters, finite non-negative sizes, min ≤ max."""
        if data is None:
            return cls()
        rules.expect_object(data, location, DISK_HINT_FIELDS)
        values: dict[str, Any] = {}
        for key in HINT_TEXT_FIELDS:
            if data.get(key) is not None:
                values[key] = rules.text(data[key], f"{location}.{key}", max_length=256, allow_empty=False)
        for key in HINT_SIZE_FIELDS:
            if data.get(key) is not None:
                values[key] = rules.number(data[key], f"{location}.{key}", maximum=MAX_DISK_GIB)
        if values.get("min_size_gib", 0) > values.get("max_size_gib", MAX_DISK_GIB):
            raise BadInput("must not exceed max_size_gib", location=f"{location}.min_size_gib")
        if data.get("rotational") is not None:
            values["rotational"] = rules.boolean(data["rotational"], f"{location}.rotational")
        return cls(**values)


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
    secure_boot: bool = False  # boot the image's signed shim → grub → kernel; never an unsigned fallback
    reboot_method: str = "firmware"  # how the agent boots the installed system (plan 1.3 `reboot.method`)
    # plan 1.4: hints for each disk the storage section names (`--ondisk=NAME`, `clearpart --drives=NAME`),
    # by that name; the disk `disk_hints` selects is the one a layout without disk names uses
    disks: dict[str, DiskHints] = field(default_factory=dict)
    encryption_passphrase: str | None = field(default=None, repr=False)  # a secret: LUKS devices' passphrase

    @classmethod
    def from_json(cls, data: Any) -> "Plan":
        return read_plan(data)

    def to_json(self) -> dict:
        """The plan document; `secure_boot` (plan 1.2) only when true and `reboot` (1.3) only for kexec, so a plan
        that asks for neither carries no field an older agent does not know."""
        document = {
            "format": PLAN_FORMAT,
            "deployment_id": self.deployment_id,
            "image": self.image.to_json(),
            "disk_hints": self.disk_hints.to_json(),
            "boot_mode": self.boot_mode,
            "storage": self.storage.to_dict() if self.storage else None,
            "hostname": self.hostname,
            "network": [n.to_json() for n in self.network],
            "root_password_hash": self.root_password_hash,
            "ssh_keys": list(self.ssh_keys),
            "kernel_args": self.kernel_args,
            "report": self.report,
        }
        if self.secure_boot:
            document["secure_boot"] = True
        if self.reboot_method != "firmware":
            document["reboot"] = {"method": self.reboot_method}
        if self.disks:
            document["disks"] = {name: hints.to_json() for name, hints in self.disks.items()}
        if self.encryption_passphrase is not None:
            document["encryption"] = {"passphrase": self.encryption_passphrase}
        return document

    @property
    def wipe_allowed(self) -> bool:
        """The plan allows destroying an existing partition table (clearpart --all or zerombr)."""
        s = self.storage
        return bool(s and (s.zerombr or (s.clearpart and s.clearpart.mode == "all")))


def read_image_url(value: Any, location: str) -> str:
    url = rules.text(value, location, allow_empty=False)
    if urlparse(url).scheme not in URL_SCHEMES:
        raise BadInput(f"unsupported URL scheme in {url!r} (http, https, file or a path)", location=location)
    return url


def read_image_urls(data: dict, location: str) -> tuple[str, ...]:
    """`url`, and `urls` (plan 1.1) when given: every source, starting with `url`."""
    url = read_image_url(data.get("url"), f"{location}.url")
    if data.get("urls") is None:
        return (url,)
    listed = rules.expect_list(data["urls"], f"{location}.urls", max_items=MAX_IMAGE_URLS)
    urls = tuple(read_image_url(item, f"{location}.urls[{i}]") for i, item in enumerate(listed))
    if not urls or urls[0] != url:
        raise BadInput("must start with the image's url (the preferred source)", location=f"{location}.urls")
    return urls


def read_image_ref(data: Any, location: str = "plan.image") -> ImageRef:
    rules.expect_object(data, location, IMAGE_FIELDS)
    name = rules.image_name(data.get("name"), f"{location}.name")
    urls = read_image_urls(data, location)
    sha = rules.sha256(data.get("sha256"), f"{location}.sha256")
    size = rules.integer(data["size"], f"{location}.size", minimum=1) if data.get("size") is not None else None
    manifest = data.get("manifest")
    if manifest is not None:
        read_image_manifest(manifest, f"{location}.manifest", sep=".")
    return ImageRef(name=name, url=urls[0], sha256=sha, size=size, manifest=manifest, urls=urls)


def read_storage(data: Any, location: str = "plan.storage") -> DeploySpec | None:
    if data is None:
        return None
    spec = DeploySpec.from_dict(data, location)
    if spec.clearpart and spec.clearpart.mode not in ("none", "all", "linux", "list"):
        raise BadInput(f"unknown mode {spec.clearpart.mode!r}", location=f"{location}.clearpart.mode")
    check_network(spec.network, f"{location}.network")
    if spec.bootloader is not None:
        rules.kernel_args(spec.bootloader.append, f"{location}.bootloader.append")
    for i, key in enumerate(spec.ssh_keys):
        rules.ssh_public_key(key.key, f"{location}.ssh_keys[{i}].key")
    return spec


def read_ssh_keys(data: Any, location: str) -> list[str]:
    keys = rules.expect_list(data if data is not None else [], location, max_items=MAX_SSH_KEYS)
    return [rules.ssh_public_key(key, f"{location}[{i}]") for i, key in enumerate(keys)]


def read_reboot_method(data: Any, location: str = "plan.reboot") -> str:
    """`reboot` (plan 1.3): {"method": "firmware" | "kexec"}; absent: firmware (what every older plan meant)."""
    if data is None:
        return "firmware"
    rules.expect_object(data, location, REBOOT_FIELDS)
    return rules.one_of(data.get("method", "firmware"), REBOOT_METHODS, f"{location}.method")


def read_disks(data: Any, location: str = "plan.disks") -> dict[str, DiskHints]:
    """`disks` (plan 1.4): {NAME: disk hints} for the disks a storage section names."""
    if data is None:
        return {}
    rules.expect_object(data, location)
    if len(data) > MAX_DISKS:
        raise BadInput(f"at most {MAX_DISKS} disks", location=location)
    disks = {}
    for name, hints in data.items():
        rules.text(name, f"{location} key", max_length=256, allow_empty=False)
        disks[name] = DiskHints.from_json(hints, f"{location}.{name}")
    return disks


def read_encryption(data: Any, location: str = "plan.encryption") -> str | None:
    """`encryption` (plan 1.4): {"passphrase": ...}, the LUKS passphrase; its value is never echoed in an error."""
    if data is None:
        return None
    rules.expect_object(data, location, ENCRYPTION_FIELDS)
    return read_passphrase(data.get("passphrase"), f"{location}.passphrase")


def read_passphrase(value: Any, location: str) -> str:
    """A LUKS passphrase: 1-512 characters, no control characters; the refusal never quotes it."""
    if not isinstance(value, str) or not value:
        raise BadInput("must be a non-empty string", location=location)
    if len(value) > MAX_PASSPHRASE or any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise BadInput(f"must be at most {MAX_PASSPHRASE} characters without control characters", location=location)
    return value


def read_plan(data: Any) -> Plan:
    """Check a plan document and return its typed form (BadInput located at `plan.FIELD`)."""
    rules.expect_object(data, "plan", TOP_FIELDS)
    check_format(data.get("format"), PLAN, "plan.format")
    deployment_id = rules.text(data.get("deployment_id"), "plan.deployment_id", max_length=64, allow_empty=False)
    network = rules.expect_list(data.get("network") or [], "plan.network", max_items=64)
    report = data.get("report")
    if report is not None:
        rules.expect_object(report, "plan.report", ("events_url", "result_url"))
        for key, value in report.items():
            rules.text(value, f"plan.report.{key}", allow_empty=False)
    hostname, password, boot_mode = data.get("hostname"), data.get("root_password_hash"), data.get("boot_mode")
    boot_mode = rules.boot_mode("both" if boot_mode is None else boot_mode, "plan.boot_mode")
    storage = read_storage(data.get("storage"))
    asked = data.get("secure_boot")
    secure_boot = (asked is not None and rules.boolean(asked, "plan.secure_boot")) or bool(
        storage and storage.secure_boot and storage.secure_boot.required)
    if secure_boot:
        secureboot.check_boot_mode(boot_mode, "plan.secure_boot")
    return Plan(
        deployment_id=deployment_id,
        image=read_image_ref(data.get("image")),
        disk_hints=DiskHints.from_json(data.get("disk_hints"), "plan.disk_hints"),
        boot_mode=boot_mode,
        storage=storage,
        hostname=rules.hostname(hostname, "plan.hostname") if hostname is not None else None,
        network=check_network([read_network_device(item, f"plan.network[{i}]") for i, item in enumerate(network)],
                              "plan.network"),
        root_password_hash=rules.password_hash(password, "plan.root_password_hash") if password is not None else None,
        ssh_keys=read_ssh_keys(data.get("ssh_keys"), "plan.ssh_keys"),
        kernel_args=rules.kernel_args(data.get("kernel_args") or "", "plan.kernel_args"),
        report=report,
        secure_boot=secure_boot,
        reboot_method=read_reboot_method(data.get("reboot")),
        disks=read_disks(data.get("disks")),
        encryption_passphrase=read_encryption(data.get("encryption")),
    )
