"""`%addon org_metalstream_deploy`: deploy-time settings that no anaconda command expresses.

    %addon org_metalstream_deploy
    secure_boot=true       # boot through the distribution's signed shim, grub and kernel (default: false)
    %end

It belongs to the deploy half of the split (the plan's `storage.secure_boot`), so it may also appear in a
deploy-time kickstart sent to the service. With `secure_boot=true`, a %packages without the family's
signed packages is a warning at that line: such an image builds, but the service refuses to deploy it
with Secure Boot.
"""
from __future__ import annotations

from dataclasses import dataclass

from metalstream.contracts.secureboot import SIGNED_CHAIN, missing_signed_packages

from ..spec import Distribution, Packages
from .adapter import Parsed
from .addon import DEPLOY_ADDON_NAME, key_values, our_section
from .diagnostics import Findings

KEYS = ("secure_boot",)
BOOLEANS = {"true": True, "false": False}


@dataclass
class DeploySettings:
    secure_boot: bool = False
    secure_boot_line: int | None = None  # of the expanded text (Findings maps it to FILE:LINE)


def read_deploy_settings(parsed: Parsed, findings: Findings) -> DeploySettings:
    """What the deploy add-on says (defaults without one); problems go to `findings`."""
    settings = DeploySettings()
    section = our_section(parsed, DEPLOY_ADDON_NAME, findings)
    if section is None:
        return settings
    values = key_values(section, KEYS, findings)
    if "secure_boot" in values:
        value, line = values["secure_boot"]
        if value not in BOOLEANS:
            findings.error(line, f"%addon {DEPLOY_ADDON_NAME}: secure_boot must be true or false, not {value!r}")
        settings.secure_boot, settings.secure_boot_line = BOOLEANS.get(value, False), line
    return settings


def check_signed_packages(settings: DeploySettings, distribution: Distribution, packages: Packages,
                          findings: Findings) -> None:
    """Warn at `secure_boot=true` when %packages lacks the family's signed shim, grub or kernel."""
    if not settings.secure_boot or distribution.family not in SIGNED_CHAIN:
        return
    missing = missing_signed_packages(distribution.family, packages.names)
    if missing:
        findings.warn(settings.secure_boot_line,
                      f"secure_boot=true but %packages lacks {', '.join(missing)}: the image will have no signed "
                      f"boot chain and the service will refuse to deploy it with Secure Boot (family="
                      f"{distribution.family} needs {', '.join(SIGNED_CHAIN[distribution.family])})")
