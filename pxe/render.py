"""Boot configuration rendering (iPXE, GRUB over HTTP, GRUB over TFTP) with jinja2. Pure: no Flask, no database.

Every value that reaches a template is checked here again, independently of the API's validation:
a value with a space, control character or script metacharacter raises RenderError instead of
being rendered, so nothing a client sends can add a line or a command to a boot script.
Template errors propagate (the caller answers 500) — never a silent fallback to local boot.

Two URLs reach a script: `boot_url`, where the firmware (iPXE, GRUB) fetches the next script, the kernel
and the initramfs — plain http where the firmware cannot verify the service's certificate — and the
service URL handed to the agent (`metalstream.server=`), https when the service has TLS.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import jinja2

from metalstream.contracts.rules import KERNEL_ARG
from metalstream.errors import OperationFailed

TEMPLATE_DIR = Path(__file__).parent / "templates"
SAFE_URL = re.compile(r"^https?://[A-Za-z0-9.\-]+(:[0-9]{1,5})?(/[A-Za-z0-9._/\-]*)?\Z")
_SAFE_HOSTPORT = re.compile(r"^[A-Za-z0-9.\-]+(:[0-9]{1,5})?\Z")
_SAFE_WORD = re.compile(r"^[A-Za-z0-9._:\-]{1,253}\Z")
_SAFE_TOKEN = re.compile(r"^[A-Za-z0-9._\-]{16,200}\Z")
_SAFE_FS_UUID = re.compile(r"^[0-9A-Fa-f\-]{4,64}\Z")


class RenderError(OperationFailed):
    """A value unfit for a boot script reached the renderer (validation upstream missed it)."""


@dataclass(frozen=True)
class InstallerBoot:
    """What a machine with a pending deployment boots: the installer with its agent's parameters."""

    base_url: str
    token: str
    deployment_id: str
    mac: str
    image: str
    hostname: str | None = None
    kernel_args: tuple[str, ...] = field(default_factory=tuple)
    mode: str | None = None  # the agent's mode (metalstream.mode=): None deploys; "inspect" (pxe.inspection)


def _check(value: str, pattern: re.Pattern, what: str) -> str:
    if not isinstance(value, str) or not pattern.match(value):
        raise RenderError(f"refusing to render {what}: {value!r} is not safe in a boot script")
    return value


def _installer_values(boot: InstallerBoot, boot_url: str | None) -> dict:
    base_url = _check(boot.base_url, SAFE_URL, "server URL")
    args = [
        f"metalstream.server={base_url}",
        f"metalstream.token={_check(boot.token, _SAFE_TOKEN, 'agent token')}",
    ]
    if boot.mode is not None:
        args.append(f"metalstream.mode={_check(boot.mode, _SAFE_WORD, 'agent mode')}")
    else:
        args.append(f"metalstream.deployment={_check(boot.deployment_id, _SAFE_WORD, 'deployment id')}")
    if boot.hostname is not None:
        args.append(f"metalstream.hostname={_check(boot.hostname, _SAFE_WORD, 'hostname')}")
    args.append("console=ttyS0,115200")
    args.extend(_check(arg, KERNEL_ARG, "kernel argument") for arg in boot.kernel_args)
    return {
        "base_url": base_url,
        "boot_url": _check(boot_url, SAFE_URL, "boot URL") if boot_url else base_url,
        "cmdline": " ".join(args),
        "deployment_id": boot.deployment_id,
        "mac": _check(boot.mac, _SAFE_WORD, "MAC"),
        "image": _check(boot.image, _SAFE_WORD, "image name"),
        "mode": boot.mode,
    }


class Renderer:
    """`boot_url`: where firmware fetches scripts, kernel and initramfs (default: each call's server URL)."""

    def __init__(self, template_dir: Path | None = None, *, boot_url: str | None = None):
        self.boot_url = boot_url.rstrip("/") if boot_url else None
        loaders = [jinja2.FileSystemLoader(str(TEMPLATE_DIR))]
        if template_dir is not None:  # site overrides come first
            loaders.insert(0, jinja2.FileSystemLoader(str(template_dir)))
        self.env = jinja2.Environment(
            loader=jinja2.ChoiceLoader(loaders),
            undefined=jinja2.StrictUndefined,
            autoescape=False,
            keep_trailing_newline=True,
            trim_blocks=True,
            lstrip_blocks=True,
        )

    def _render(self, name: str, **values) -> str:
        text = self.env.get_template(name).render(**values)
        if any(ord(ch) < 0x20 and ch != "\n" for ch in text) or not text.isascii():
            raise RenderError(f"template {name} produced control or non-ASCII characters")
        return text

    def _boot_url(self, base_url: str) -> str:
        _check(base_url, SAFE_URL, "server URL")
        return _check(self.boot_url, SAFE_URL, "boot URL") if self.boot_url else base_url

    def chain_ipxe(self, base_url: str) -> str:
        return self._render("chain.ipxe.j2", base_url=self._boot_url(base_url))

    def installer_ipxe(self, boot: InstallerBoot) -> str:
        return self._render("installer.ipxe.j2", **_installer_values(boot, self.boot_url))

    def local_ipxe(self, mac: str | None) -> str:
        return self._render("local.ipxe.j2", mac=_check(mac, _SAFE_WORD, "MAC") if mac else None)

    def chain_grub(self, base_url: str) -> str:
        return self._render("chain.grub.j2", http_host=_grub_host(self._boot_url(base_url)))

    def installer_grub(self, boot: InstallerBoot) -> str:
        values = _installer_values(boot, self.boot_url)
        return self._render("installer.grub.j2", http_host=_grub_host(values["boot_url"]), **values)

    def local_grub(self, mac: str | None, root_uuid: str | None = None) -> str:
        """`root_uuid`: the root filesystem of the MAC's last install (found by UUID, not the first disk with a
        grub.cfg)."""
        return self._render("local.grub.j2", mac=_check(mac, _SAFE_WORD, "MAC") if mac else None,
                            root_uuid=_check(root_uuid, _SAFE_FS_UUID, "filesystem UUID") if root_uuid else None)

    # The signed network GRUB of the Secure Boot path has no http module: it reads its chain config, the per-MAC
    # config, the kernel and the initramfs over TFTP, or (UEFI HTTP boot, pxe.httpboot) from its RAM disk.
    def chain_tftp_grub(self) -> str:
        return self._render("tftp-chain.grub.j2")

    def installer_tftp_grub(self, boot: InstallerBoot, *, source: str = "over TFTP") -> str:
        """`source`: where GRUB reads /installer/vmlinuz and /installer/initrd.img from, for the header."""
        return self._render("tftp-installer.grub.j2", source=source, **_installer_values(boot, None))

    def no_installer_grub(self, mac: str) -> str:
        return self._render("no-installer.grub.j2", mac=_check(mac, _SAFE_WORD, "MAC"))


def _grub_host(base_url: str) -> str:
    hostport = base_url.split("://", 1)[1].split("/", 1)[0]
    return _check(hostport, _SAFE_HOSTPORT, "server host")
