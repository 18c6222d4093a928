"""What the metalstream pipeline does with each kickstart command, option and section: one table.

- A command in BUILD_COMMANDS or DEPLOY_COMMANDS is split into the build or deploy spec. For each, OPTIONS
  declares every option the split honours; COSMETIC the options that do not matter for an image (a
  warning naming what is ignored); any other option given on the line is an error at that line: ignoring
  it would give a different result from what the kickstart says. No option is dropped silently.
- Other commands pykickstart accepts: COSMETIC_COMMANDS are warnings (ignored, nothing in the image
  depends on them); NOT_SUPPORTED_COMMANDS are errors (ignoring them would change the result).
- Sections: IGNORED_SECTIONS are warnings, NOT_SUPPORTED_SECTIONS errors.

`--strict` makes every warning an error. kickstarts/README.md documents the same table.
"""
from __future__ import annotations

from pykickstart.base import DeprecatedCommand, RemovedCommand

from .adapter import Parsed
from .diagnostics import Findings

BUILD_COMMANDS = frozenset({
    "url", "repo", "lang", "keyboard", "timezone", "selinux", "services", "firewall",
    "rootpw", "user", "group", "sshkey",
})
DEPLOY_COMMANDS = frozenset({
    "ignoredisk", "clearpart", "zerombr", "reqpart", "autopart", "part", "partition", "volgroup", "logvol", "raid",
    "btrfs", "bootloader", "network",
})
SUPPORTED_SECTIONS = frozenset({"%packages", "%post", "%pre", "%addon"})

# Options (any spelling pykickstart accepts for the same option) the split carries into a spec.
# `network` is checked by its own split (network_split).
_LUKS = frozenset({"--encrypted", "--luks-version", "--cipher"})
_PART = frozenset({"--fstype", "--grow", "--maxsize", "--ondisk", "--size", "--fsoptions", "--label",
                   "--recommended", "--hibernation"}) | _LUKS
OPTIONS: dict[str, frozenset[str]] = {
    "url": frozenset({"--url", "--mirrorlist", "--metalink"}),
    "repo": frozenset({"--name", "--baseurl", "--mirrorlist", "--metalink", "--cost", "--excludepkgs", "--includepkgs",
                       "--install"}),
    "lang": frozenset(),
    "keyboard": frozenset({"--vckeymap", "--xlayouts", "--switch"}),
    "timezone": frozenset({"--utc", "--isUtc"}),
    "selinux": frozenset({"--disabled", "--enforcing", "--permissive"}),
    "services": frozenset({"--disabled", "--enabled"}),
    "firewall": frozenset({"--disabled", "--enabled", "--port", "--trust", "--service", "--ftp", "--http", "--smtp",
                           "--ssh", "--remove-service", "--use-system-defaults"}),
    "rootpw": frozenset({"--iscrypted", "--plaintext", "--lock", "--allow-ssh"}),
    "user": frozenset({"--homedir", "--iscrypted", "--plaintext", "--name", "--password", "--shell", "--uid", "--lock",
                       "--gecos", "--gid", "--groups"}),
    "group": frozenset({"--name", "--gid"}),
    "sshkey": frozenset({"--username"}),
    "ignoredisk": frozenset({"--drives", "--only-use"}),
    "clearpart": frozenset({"--all", "--initlabel", "--linux", "--none", "--disklabel", "--drives", "--list"}),
    "zerombr": frozenset(),
    "reqpart": frozenset({"--add-boot"}),
    "autopart": frozenset({"--type", "--nolvm", "--fstype", "--nohome", "--noboot", "--noswap",
                           "--hibernation"}) | _LUKS,
    "part": _PART,
    "partition": _PART,
    "volgroup": frozenset({"--pesize", "--reserved-space", "--reserved-percent"}),
    "logvol": frozenset({"--vgname", "--name", "--fstype", "--size", "--grow", "--maxsize", "--percent", "--thinpool",
                         "--thin", "--poolname", "--chunksize", "--recommended", "--hibernation", "--label",
                         "--fsoptions"}) | _LUKS,
    "raid": frozenset({"--level", "--device", "--spares", "--fstype", "--chunksize", "--label", "--fsoptions"}) | _LUKS,
    "btrfs": frozenset({"--data", "--metadata", "--label", "--subvol", "--name"}),
    "bootloader": frozenset({"--append", "--location", "--timeout", "--boot-drive", "--disabled"}),
}

_BUILD_NETWORK = "packages are fetched with the build machine's own network settings"
_BOOT_DISKS = "the agent installs the bootloader on the disks that hold /boot"
_COSMETIC_PART = {"--asprimary": "GPT has no primary/logical partitions"}
COSMETIC: dict[str, dict[str, str]] = {
    "url": {"--proxy": _BUILD_NETWORK, "--noverifyssl": "certificates are always checked"},
    "repo": {"--proxy": _BUILD_NETWORK, "--noverifyssl": "certificates are always checked"},
    "clearpart": {"--cdl": "DASD (s390x) only"},
    "part": _COSMETIC_PART,
    "partition": _COSMETIC_PART,
    "bootloader": {"--driveorder": _BOOT_DISKS, "--default": "the image's kernel is the default entry"},
}

_PASSPHRASE = ("the passphrase comes from the deploy plan (`encryption.passphrase`), never from the kickstart, "
               "which is stored with the image and in the service")
_KEY_OPTIONS = {"--passphrase": _PASSPHRASE,
                "--escrowcert": "escrow certificates and backup passphrases are not supported",
                "--backuppassphrase": "escrow certificates and backup passphrases are not supported",
                **dict.fromkeys(("--pbkdf", "--pbkdf-memory", "--pbkdf-time", "--pbkdf-iterations"),
                                "cryptsetup's default key derivation is used")}
_NEW = "every device is created anew (existing data is never kept)"
_EXISTING = dict.fromkeys(("--noformat", "--useexisting"), _NEW)
# Why an option is refused, where a better reason than "would change the result" exists.
REFUSED: dict[str, dict[str, str]] = {
    "part": {**_KEY_OPTIONS,
             "--noformat": "every partition is formatted (existing data is never kept)",
             "--onpart": "partitions are always created anew", "--resize": "partitions are always created anew",
             "--onbiosdisk": "name the disk with --ondisk"},
    "autopart": _KEY_OPTIONS,
    "logvol": {**_KEY_OPTIONS, **_EXISTING, "--resize": _NEW,
               **dict.fromkeys(("--cachesize", "--cachemode", "--cachepvs"), "LVM cache volumes are not supported"),
               "--metadatasize": "the thin pool's metadata size is LVM's default",
               "--profile": "LVM profiles are not supported"},
    "raid": {**_KEY_OPTIONS, **_EXISTING},
    "volgroup": _EXISTING,
    "btrfs": _EXISTING,
    "url": dict.fromkeys(("--sslcacert", "--sslclientcert", "--sslclientkey"),
                         "TLS client settings for repositories are not supported yet"),
    "repo": dict.fromkeys(("--sslcacert", "--sslclientcert", "--sslclientkey"),
                          "TLS client settings for repositories are not supported yet"),
    "bootloader": {"--password": "a GRUB password is not supported yet", "--iscrypted": "a GRUB password is not supported yet",
                   "--md5pass": "a GRUB password is not supported yet", "--extlinux": "GRUB is always installed",
                   "--sdboot": "GRUB is always installed", "--nombr": "use --location=partition or none",
                   "--leavebootorder": "on UEFI the agent's new boot entry goes first in the firmware boot order"},
    "timezone": {"--ntpservers": "NTP servers are not configured (set them in %post)",
                 "--nontp": "NTP is not turned off (disable the service with `services --disabled`)"},
    "lang": {"--addsupport": "extra language support is not installed (list its packages in %packages)"},
}
REFUSED["partition"] = REFUSED["part"]

_UI = "installer user-interface setting; metalstream installs unattended from a prebuilt image"
_REBOOT = "the deployer agent always reboots into the installed system after a successful install"
COSMETIC_COMMANDS = {
    **dict.fromkeys(("text", "graphical", "cmdline", "skipx", "eula", "firstboot", "mediacheck", "vnc",
                     "xconfig", "autostep", "rescue", "logging", "sshpw", "updates", "driverdisk"), _UI),
    **dict.fromkeys(("reboot", "poweroff", "halt", "shutdown"), _REBOOT),
}
_SOURCE = "install sources other than `url` and `repo` are not supported"
NOT_SUPPORTED_COMMANDS = {
    **dict.fromkeys(("dmraid", "multipath", "snapshot", "iscsi", "iscsiname", "fcoe", "zfcp", "nvdimm", "zipl",
                     "mount"),
                    "not supported yet: metalstream creates new partitions, LVM, md RAID, btrfs and LUKS on local "
                    "disks (`part`, `volgroup`, `logvol`, `raid`, `btrfs`, `autopart`)"),
    **dict.fromkeys(("cdrom", "harddrive", "nfs", "liveimg", "ostreesetup", "ostreecontainer", "bootc"),
                    "not supported: install sources other than `url` and `repo`"),
}
_NOT_YET = "not supported by metalstream yet (ignoring it would change the result)"

IGNORED_SECTIONS = {
    "%pre-install": "%pre-install scripts are not run: ignored",
    "%onerror": "%onerror scripts are not run (the agent reports a failed install): ignored",
    "%traceback": "%traceback scripts are not run: ignored",
    "%anaconda": "%anaconda sections configure the anaconda UI: ignored",
}
NOT_SUPPORTED_SECTIONS = {
    "%certificate": "%certificate sections are not supported yet",
}

_PARSERS: dict[str, dict[str, tuple[str, ...]]] = {}


def check_support(parsed: Parsed, findings: Findings) -> None:
    """Report, at its line, every command, option and section the pipeline will not act on."""
    for name, line, args in parsed.commands:
        command = parsed.handler.commands.get(name)
        if command is None or isinstance(command, RemovedCommand) or line in parsed.refused:
            continue  # pykickstart reported the line already (unknown or removed command, bad syntax): once
        if name in OPTIONS:
            check_options(parsed, name, line, args, findings)
        elif name in BUILD_COMMANDS or name in DEPLOY_COMMANDS:
            continue  # network: its own split checks its options
        elif name in COSMETIC_COMMANDS:
            findings.ignore(line, name, f"{COSMETIC_COMMANDS[name]}: ignored")
        elif isinstance(command, DeprecatedCommand):
            continue  # pykickstart warned already
        else:
            findings.error(line, f"`{name}`: {NOT_SUPPORTED_COMMANDS.get(name, _NOT_YET)}")
    check_overrides(parsed, findings)
    for section in parsed.sections:
        if section.name in IGNORED_SECTIONS:
            findings.ignore(section.line, section.name, IGNORED_SECTIONS[section.name])
        elif section.name in NOT_SUPPORTED_SECTIONS:
            findings.error(section.line, NOT_SUPPORTED_SECTIONS[section.name])


def check_overrides(parsed: Parsed, findings: Findings) -> None:
    """A command that holds one value, given again (also across %include): the later line replaces the earlier
    (anaconda semantics); a warning at the later line names the earlier place."""
    last: dict[int, int] = {}
    for name, line, _args in parsed.commands:
        command = parsed.handler.commands.get(name)
        if command is None or isinstance(command, RemovedCommand) or command.dataList() is not None:
            continue  # list commands (part, user, repo, ...): their split reports overrides by name
        if id(command) in last:
            findings.warn(line, f"`{name}`: overrides the definition at {findings.place(last[id(command)])}")
        last[id(command)] = line


def check_options(parsed: Parsed, name: str, line: int, args: list[str], findings: Findings) -> None:
    """Every option on a supported command's line is honoured, ignored with a warning, or an error."""
    spellings = _spellings(parsed, name)
    for arg in args:
        if not arg.startswith("--"):
            continue
        given = arg.split("=", 1)[0]
        names = spellings.get(given) or _abbreviated(spellings, given)
        if not names:
            continue  # pykickstart reported the unknown option
        if OPTIONS[name] & set(names):
            continue
        cosmetic = next((COSMETIC[name][n] for n in names if n in COSMETIC.get(name, {})), None)
        if cosmetic:
            findings.ignore(line, f"{name} {given}", f"{cosmetic}: ignored")
            continue
        reason = next((REFUSED[name][n] for n in names if n in REFUSED.get(name, {})), None)
        findings.error(line, f"{name} {given}: not supported: {reason or 'ignoring it would change the result'}")
        for spelling in names:  # one message a line: pykickstart's "deprecated, no longer has any effect" goes
            findings.drop_warnings(line, spelling)


def _spellings(parsed: Parsed, name: str) -> dict[str, tuple[str, ...]]:
    """Each option string of command `name` -> all spellings of the same option (`--onpart` -> --onpart, --usepart)."""
    if name not in _PARSERS:
        parser = parsed.handler.commands[name]._getParser()
        _PARSERS[name] = {s: tuple(a.option_strings) for a in parser._actions for s in a.option_strings}
    return _PARSERS[name]


def _abbreviated(spellings: dict[str, tuple[str, ...]], given: str) -> tuple[str, ...]:
    matches = {spellings[s] for s in spellings if s.startswith(given)}
    return matches.pop() if len(matches) == 1 else ()
