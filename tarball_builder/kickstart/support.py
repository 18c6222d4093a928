"""What the metalstream pipeline does with each kickstart command and section.

Commands the pipeline implements are split into the build or deploy spec. Everything else that
pykickstart accepts is reported as a warning with its line (never silently dropped); `--strict`
makes those warnings errors. kickstarts/README.md documents the same table.
"""
from __future__ import annotations

from .adapter import Parsed
from .diagnostics import Findings

BUILD_COMMANDS = frozenset({
    "url", "repo", "lang", "keyboard", "timezone", "selinux", "services", "firewall",
    "rootpw", "user", "group", "sshkey",
})
DEPLOY_COMMANDS = frozenset({
    "ignoredisk", "clearpart", "zerombr", "reqpart", "autopart", "part", "partition", "bootloader", "network",
})
SUPPORTED_SECTIONS = frozenset({"%packages", "%post", "%addon"})

_UI = "installer user-interface setting; metalstream installs unattended from a prebuilt image: ignored"
_REBOOT = "the deployer agent always reboots into the installed system after a successful install: ignored"
_STORAGE = "LVM, RAID, btrfs volumes and encrypted storage are not supported yet (plain GPT partitions only): ignored"
_SOURCE = "install sources other than `url` and `repo` are not supported: ignored"
_NOT_YET = "not supported by metalstream yet: ignored"

IGNORED_COMMANDS = {
    **dict.fromkeys(("text", "graphical", "cmdline", "skipx", "eula", "firstboot", "mediacheck", "vnc",
                     "xconfig", "autostep", "rescue"), _UI),
    **dict.fromkeys(("reboot", "poweroff", "halt", "shutdown"), _REBOOT),
    **dict.fromkeys(("logvol", "volgroup", "raid", "btrfs", "dmraid", "multipath", "snapshot"), _STORAGE),
    **dict.fromkeys(("cdrom", "harddrive", "nfs", "liveimg", "ostreesetup", "ostreecontainer", "install",
                     "method", "updates", "driverdisk"), _SOURCE),
}

IGNORED_SECTIONS = {
    "%pre": "%pre scripts are not supported (there is no installer run on the target): ignored",
    "%pre-install": "%pre-install scripts are not supported: ignored",
    "%onerror": "%onerror scripts are not supported: ignored",
    "%traceback": "%traceback scripts are not supported: ignored",
    "%certificate": "%certificate sections are not supported yet: ignored",
    "%anaconda": "%anaconda sections configure the anaconda UI: ignored",
}


def check_support(parsed: Parsed, findings: Findings) -> None:
    """Warn about every command and section the pipeline will not act on, at its line."""
    for name, line, _args in parsed.commands:
        if name in BUILD_COMMANDS or name in DEPLOY_COMMANDS:
            continue
        if name not in parsed.handler.commands:
            continue  # unknown command: pykickstart already reported it as an error
        reason = IGNORED_COMMANDS.get(name, _NOT_YET)
        findings.warn(line, f"`{name}`: {reason}")
    for section in parsed.sections:
        if section.name in IGNORED_SECTIONS:
            findings.warn(section.line, IGNORED_SECTIONS[section.name])
