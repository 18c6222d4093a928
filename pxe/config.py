"""Service configuration: one dataclass, filled by `metalstream serve` options or by tests."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from metalstream.contracts import rules
from metalstream.contracts.plan import REBOOT_METHODS

from .mirrors import MirrorRule, parse_mirror_rule


@dataclass
class ServiceConfig:
    data_dir: Path
    db_url: str | None = None  # default: sqlite:///DATA_DIR/metalstream.db
    installer: Path | None = None  # metalstream-installer/1 manifest (kernel + initramfs beside it)
    public_url: str | None = None  # URL machines reach the service at; default: from each request's Host
    template_dir: Path | None = None  # site overrides for the boot templates
    agent_timeout: float = 900.0  # seconds of agent silence (booting/installing) before a deployment fails
    activation_timeout: float = 1800.0  # seconds after `installed` for the SSH check to succeed
    activation_retry: float = 15.0  # seconds between SSH attempts while the new system boots
    activation_root: str = "/"  # where the check looks on the target (tests point it at a mounted image)
    ssh_user: str = "root"
    supervisor_interval: float = 10.0  # background sweep for silence timeouts and activation checks; 0 = off
    image_import_dirs: tuple[Path, ...] = ()  # where POST /api/v1/images may read manifests; none = nowhere
    auth_max_failures: int = 10  # wrong tokens from one address within auth_window before it is blocked; 0 = off
    auth_window: float = 60.0
    auth_block: float = 300.0  # seconds a blocked address is refused (429)
    tls_cert: Path | None = None  # PEM certificate (chain): gunicorn serves HTTPS with it
    tls_key: Path | None = None  # its unencrypted PEM private key
    # URL firmware fetches boot scripts, kernel and initramfs from (iPXE/GRUB: usually plain http while the
    # agent uses https); default: the public URL
    boot_url: str | None = None
    # `CIDR=URL` mirror rules (pxe/mirrors.py), preferred first: an agent in a rule's subnet gets the mirror's
    # image URL before the service's own in its plan
    image_mirrors: tuple[str, ...] = ()
    # how agents boot the installed system when the deployment does not say (`reboot_method`): firmware | kexec
    reboot_method: str = "firmware"
    # machines and power (issue 14)
    discovery: bool = False  # an unknown MAC that PXE-boots gets the installer in inspection mode
    bmc_timeout: float = 20.0  # seconds one BMC call may take
    bmc_retries: int = 3  # attempts of one BMC operation (backoff between them) before it fails
    bmc_concurrency: int = 2  # BMC calls at once per BMC address (per service process)
    power_refresh_interval: float = 300.0  # seconds between power-state refreshes of a machine; 0 = off
    boot_timeout: float = 600.0  # seconds after power-on for the machine to network-boot before it fails
    # webhooks
    webhook_timeout: float = 10.0  # seconds one delivery may take
    webhook_retry_for: float = 6 * 3600.0  # keep retrying a delivery for this long (exponential backoff)
    webhook_backoff: float = 5.0  # seconds before a delivery's first retry; doubling (with jitter) up to 15 min

    def __post_init__(self) -> None:
        self.image_mirrors = tuple(str(parse_mirror_rule(str(rule))) for rule in self.image_mirrors)
        rules.one_of(self.reboot_method, REBOOT_METHODS, "--reboot-method")
        self.data_dir = Path(self.data_dir).resolve()
        for name in ("installer", "tls_cert", "tls_key"):
            if getattr(self, name) is not None:
                setattr(self, name, Path(getattr(self, name)).resolve())
        self.image_import_dirs = tuple(Path(d).resolve() for d in self.image_import_dirs)
        if self.db_url is None:
            self.db_url = f"sqlite:///{self.data_dir / 'metalstream.db'}"

    @property
    def mirror_rules(self) -> tuple[MirrorRule, ...]:
        return tuple(parse_mirror_rule(rule) for rule in self.image_mirrors)

    @property
    def image_dir(self) -> Path:
        return self.data_dir / "images"

    @property
    def deploy_key(self) -> Path:
        return self.data_dir / "deploy_key"

    def prepare(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.image_dir.mkdir(exist_ok=True)
