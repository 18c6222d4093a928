"""Front-end fidelity on a corpus of kickstarts written the way users write them (issue 12, acceptance).

tests/data/ks/corpus/NAME.ks (or NAME.ks.j2) is one case; NAME.expect.json says what `ks lint` must make of it:

    {"args": ["--family", "rpm", "--release", "40"],    # command-line flags (optional)
     "vars": {"host": "web1"},                          # --var values, for *.ks.j2 (optional)
     "diagnostics": ["FILE:LINE: severity: message"],   # exactly, in order; a trailing "..." matches a prefix
     "ignored": ["text", "network --activate"],         # the per-file summary of ignored items (optional)
     "storage": ["LVM vg0 on pv.01: root -> / ..."],    # the per-file `storage:` lines (optional)
     "build": {...}, "deploy": {...},                    # clean cases: the specs, written as the fields that
                                                         # differ from the dataclass defaults (filled in here)
     "xfail_reason": "..."}                              # a known front-end defect left for later (optional);
                                                         # xfail_lines, xfail_build, xfail_deploy: the same for
                                                         # the line, backend and planner checks

Files named *.inc are included by the cases. Every case goes through the real CLI, one `ks lint --json`
process per distinct set of flags. For a clean case the test also checks that every line of the kickstart
and of its includes is carried by the spec (a spec element with that line, a value for commands whose spec
fields have no line, a carried section) or named by a diagnostic, that every option on a command line is
in the spec or in an `ignored` warning, and that the RPM backend's dnf plan, Debian's apt sources and the
agent's planner (layout, disk-use check, network files) accept the specs, as at build and deploy time.
"""
from __future__ import annotations

import json
import shlex
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import get_args, get_origin, get_type_hints

import pytest

from conftest import REPO, run_cli
from deployer.network import networkd_files, networkmanager_files
from deployer.partition import check_disk_use, plan_layout
from deployer.storage.model import TargetDisk
from deployer.storage.planner import plan_storage
from metalstream.contracts.deployspec import DeploySpec
from metalstream.contracts.plan import ImageRef, Plan
from tarball_builder.backends.apt_sources import from_repos, render
from tarball_builder.backends.rpm_plan import plan_install
from tarball_builder.spec import BuildSpec

CORPUS = REPO / "tests" / "data" / "ks" / "corpus"
SUFFIXES = (".ks", ".ks.j2")
GIB = 1024 ** 3
DISK_BYTES = 40 * GIB  # the fake target disk the planner lays out (data, no device)
MEMORY_BYTES = 4 * GIB  # the fake machine's memory, for swap --recommended/--hibernation
SECTIONS = ("%packages", "%post", "%pre", "%pre-install", "%addon", "%onerror", "%traceback")


def case_names() -> list[str]:
    return sorted(p.name for p in CORPUS.iterdir() if p.is_file() and p.name.endswith(SUFFIXES))


def expectation(name: str) -> dict:
    stem = name.removesuffix(".j2").removesuffix(".ks")
    path = CORPUS / f"{stem}.expect.json"
    return json.loads(path.read_text()) if path.exists() else {}


def cli_flags(expect: dict) -> tuple[str, ...]:
    flags = list(expect.get("args", []))
    for key, value in sorted(expect.get("vars", {}).items()):
        flags += ["--var", f"{key}={value}"]
    return tuple(flags)


# ---------------------------------------------------------------------------------------------- running lint

def _chunks(stderr: str, files: list[str]) -> dict[str, dict]:
    """Split `ks lint` stderr into each file's diagnostics, summary verdict and ignored list (files in order)."""
    results = {f: {"diagnostics": [], "ignored": [], "storage": [], "verdict": None} for f in files}
    pending: list[str] = []
    index = 0
    for line in stderr.splitlines():
        current = files[index] if index < len(files) else None
        if current and line.startswith(f"{current}: ") and line[len(current) + 2:].startswith(("ok (", "FAILED (")):
            results[current]["diagnostics"] = pending
            results[current]["verdict"] = line[len(current) + 2:].split(" ", 1)[0]
            pending = []
            index += 1
        elif index > 0 and line.startswith(f"{files[index - 1]}: ignored: "):
            results[files[index - 1]]["ignored"] = line.split(": ignored: ", 1)[1].split(", ")
        elif index > 0 and line.startswith(f"{files[index - 1]}: storage: "):
            results[files[index - 1]]["storage"].append(line.split(": storage: ", 1)[1])
        else:
            pending.append(line)
    assert index == len(files), f"summary lines missing from ks lint's output:\n{stderr}"
    return results


@pytest.fixture(scope="module")
def linted() -> dict[str, dict]:
    """Every case through the real CLI: {name: {diagnostics, ignored, verdict, document}}."""
    groups: dict[tuple[str, ...], list[str]] = {}
    for name in case_names():
        groups.setdefault(cli_flags(expectation(name)), []).append(name)
    results: dict[str, dict] = {}
    for flags, files in groups.items():
        done = run_cli("ks", "lint", "--json", *flags, *files, cwd=CORPUS, timeout=120)
        assert "Traceback" not in done.stderr, done.stderr
        chunks = _chunks(done.stderr, files)
        documents = json.loads(done.stdout) if done.stdout.strip() else []
        documents = [documents] if isinstance(documents, dict) else documents
        by_source = {d["source"]: d for d in documents}
        for name in files:
            results[name] = {**chunks[name], "document": by_source.get(name)}
    return results


def _cases(clean_only: bool = False, family: str | None = None, xfail_key: str = "xfail_reason"):
    """Cases as parameters; `xfail_key` names the expectation key that marks a known defect for this test."""
    params = []
    for name in case_names():
        expect = expectation(name)
        clean = "build" in expect
        if clean_only and not clean:
            continue
        if family and expect.get("build", {}).get("distribution", {}).get("family") != family:
            continue
        marks = [pytest.mark.xfail(reason=expect[xfail_key], strict=True)] if xfail_key in expect else []
        params.append(pytest.param(name, marks=marks, id=name))
    return params


def test_the_corpus_has_at_least_60_kickstarts_each_with_an_expectation():
    names = case_names()
    assert len(names) >= 60
    without = [n for n in names if not expectation(n) or "diagnostics" not in expectation(n)]
    assert without == []
    clean = [n for n in names if "build" in expectation(n)]
    assert len(clean) >= 30 and len(names) - len(clean) >= 15  # both outcomes are well represented


def _matches(expected: list[str], got: list[str]) -> bool:
    if len(expected) != len(got):
        return False
    return all(g == e or (e.endswith("...") and g.startswith(e[:-3])) for e, g in zip(expected, got))


def _filled(cls, overlay: dict):
    """Dataclass `cls` with the overlay's fields (nested dataclasses and lists of them too), defaults elsewhere."""
    hints = get_type_hints(cls)
    unknown = set(overlay) - {f.name for f in fields(cls)}
    assert not unknown, f"{cls.__name__} has no field {unknown}"
    values = {}
    for name, value in overlay.items():
        kind = hints[name]
        if type(None) in get_args(kind):
            kind = next(a for a in get_args(kind) if a is not type(None))
        if get_origin(kind) is list and is_dataclass(get_args(kind)[0]):
            value = [_filled(get_args(kind)[0], item) for item in value]
        elif is_dataclass(kind) and value is not None:
            value = _filled(kind, value)
        values[name] = value
    return cls(**values)


def full_build(overlay: dict) -> dict:
    return _filled(BuildSpec, overlay).to_dict()


def full_deploy(overlay: dict) -> dict:
    return _filled(DeploySpec, overlay).to_dict()


@pytest.mark.parametrize("name", _cases())
def test_lint_gives_exactly_the_expected_outcome(linted, name):
    expect, got = expectation(name), linted[name]
    assert _matches(expect["diagnostics"], got["diagnostics"]), "\n".join(got["diagnostics"])
    assert got["ignored"] == expect.get("ignored", [])
    if "storage" in expect:
        assert got["storage"] == expect["storage"]
    clean = "build" in expect
    assert got["verdict"] == ("ok" if clean else "FAILED")
    if not clean:
        assert got["document"] is None
        return
    document = got["document"]
    assert document["build"] == full_build(expect["build"])
    assert document["deploy"] == full_deploy(expect["deploy"])
    assert document["ignored"] == expect.get("ignored", [])


# ------------------------------------------------------------------------------ every line, every option kept

def _flag(field, expected=True):
    check = lambda element, _value: element.get(field) == expected  # noqa: E731
    check.flag = True
    return check


def _eq(field, convert=str):
    return lambda element, value: element.get(field) == convert(value)


def _items(field, separator=","):
    def check(element, value):
        items = [i.strip() for i in value.split(";" if ";" in value else separator) if i.strip()]
        return bool(items) and all(i in element.get(field, []) for i in items)
    return check


def _yes(field):
    return lambda element, value: element.get(field) == (value.lower() in ("yes", "true", "1", "on"))


def _rootpw_crypted(element, _value):
    # `rootpw --lock --iscrypted PLACEHOLDER`: the placeholder is no password; root ends locked
    return element.get("is_crypted") or (element.get("lock") and element.get("password") is None)


_rootpw_crypted.flag = True
def _level(field):
    """`--level=1`, `--level=RAID1`, `--data=1`: the spec holds "raid1"."""
    return lambda element, value: element.get(field) in (value.lower(), f"raid{value.lower().removeprefix('raid')}")


_LUKS = {"--encrypted": _flag("encrypted"), "--luks-version": _eq("luks_version"), "--cipher": _eq("cipher")}
_FS = {"--fstype": _eq("fstype"), "--label": _eq("label"), "--fsoptions": _eq("fsoptions")}
_PART = {**_FS, **_LUKS, "--size": _eq("size_mib", int), "--grow": _flag("grow"),
         "--maxsize": _eq("max_size_mib", int), "--ondisk": _eq("ondisk"), "--ondrive": _eq("ondisk"),
         "--recommended": _flag("recommended"), "--hibernation": _flag("hibernation")}
_REPO = {"--name": _eq("name"), "--baseurl": _eq("baseurl"), "--mirrorlist": _eq("mirrorlist"),
         "--metalink": _eq("metalink"), "--cost": _eq("cost", int), "--excludepkgs": _items("excludepkgs"),
         "--includepkgs": _items("includepkgs"), "--install": _flag("install")}
# command -> option -> check(spec element, value given). A flag's check carries `.flag`.
OPTIONS = {
    "url": {"--url": _eq("baseurl"), "--mirrorlist": _eq("mirrorlist"), "--metalink": _eq("metalink")},
    "repo": _REPO,
    "keyboard": {"--vckeymap": _eq("keyboard"), "--xlayouts": _items("keyboard_layouts"),
                 "--switch": _items("keyboard_switch")},
    "timezone": {"--utc": _flag("utc"), "--isUtc": _flag("utc")},
    "selinux": {"--enforcing": _flag("selinux", "enforcing"), "--permissive": _flag("selinux", "permissive"),
                "--disabled": _flag("selinux", "disabled")},
    "services": {"--enabled": _items("enabled"), "--disabled": _items("disabled")},
    "firewall": {"--enabled": _flag("enabled"), "--disabled": _flag("enabled", False),
                 "--service": _items("services"), "--port": _items("ports"), "--trust": _items("trusts")},
    "rootpw": {"--iscrypted": _rootpw_crypted, "--lock": _flag("lock"), "--allow-ssh": _flag("allow_ssh"),
               "--plaintext": _flag("is_crypted", False)},
    "user": {"--name": _eq("name"), "--groups": _items("groups"), "--password": _eq("password"),
             "--iscrypted": _flag("is_crypted"), "--plaintext": _flag("is_crypted", False), "--lock": _flag("lock"),
             "--shell": _eq("shell"), "--uid": _eq("uid", int), "--gid": _eq("gid", int), "--gecos": _eq("gecos"),
             "--homedir": _eq("homedir")},
    "group": {"--name": _eq("name"), "--gid": _eq("gid", int)},
    "sshkey": {"--username": _eq("user")},
    "ignoredisk": {"--only-use": _items("only_use"), "--drives": _items("ignore")},
    "clearpart": {"--all": _flag("mode", "all"), "--linux": _flag("mode", "linux"), "--none": _flag("mode", "none"),
                  "--list": _items("partitions"), "--drives": _items("drives"), "--initlabel": _flag("initlabel"),
                  "--disklabel": _eq("disklabel")},
    "zerombr": {},
    "reqpart": {"--add-boot": _flag("reqpart_add_boot")},
    "autopart": {"--type": _eq("scheme"), "--fstype": _eq("fstype"), "--nohome": _flag("nohome"),
                 "--noswap": _flag("noswap"), "--noboot": _flag("noboot"), "--hibernation": _flag("hibernation"),
                 **_LUKS},
    "part": _PART, "partition": _PART,
    "volgroup": {"--pesize": _eq("pesize_kib", int), "--reserved-space": _eq("reserved_space_mib", int),
                 "--reserved-percent": _eq("reserved_percent", int)},
    "logvol": {**_FS, **_LUKS, "--vgname": _eq("vgname"), "--name": _eq("name"), "--size": _eq("size_mib", int),
               "--grow": _flag("grow"), "--maxsize": _eq("max_size_mib", int), "--percent": _eq("percent", int),
               "--thinpool": _flag("thinpool"), "--thin": _flag("thin"), "--poolname": _eq("poolname"),
               "--chunksize": _eq("chunksize_kib", int), "--recommended": _flag("recommended"),
               "--hibernation": _flag("hibernation")},
    "raid": {**_FS, **_LUKS, "--level": _level("level"), "--device": lambda e, v: e.get("device") in (v, f"md{v}"),
             "--spares": _eq("spares", int), "--chunksize": _eq("chunksize_kib", int)},
    "btrfs": {"--data": _level("data_level"), "--metadata": _level("metadata_level"), "--label": _eq("label"),
              "--subvol": _flag("subvol"), "--name": _eq("name")},
    "bootloader": {"--append": _eq("append"), "--location": _eq("location"), "--timeout": _eq("timeout", int),
                   "--boot-drive": _eq("boot_drive"), "--disabled": _flag("location", "none")},
    "network": {"--device": _eq("device"), "--bootproto": _eq("bootproto"), "--ip": _eq("ip"),
                "--netmask": _eq("netmask"), "--gateway": _eq("gateway"), "--nameserver": _items("nameservers"),
                "--ipv6": _eq("ipv6"), "--mtu": _eq("mtu", int), "--onboot": _yes("onboot"),
                "--hostname": _eq("hostname"), "--ipv6gateway": _eq("ipv6_gateway"),
                "--nodefroute": _flag("nodefroute"), "--nodns": _flag("nodns"),
                "--noipv4": _flag("bootproto", "disabled"), "--noipv6": _flag("ipv6", "disabled"),
                "--ipv4-dns-search": _items("ipv4_dns_search"), "--ipv6-dns-search": _items("ipv6_dns_search"),
                "--bindto": lambda e, v: e.get("bind_to_mac") == (v == "mac"),
                "--bondslaves": _items("bond_slaves"), "--bondopts": _items("bond_options"),
                "--vlanid": _eq("vlan_id", int), "--interfacename": _eq("interface_name"),
                "--bridgeslaves": _items("bridge_slaves"), "--bridgeopts": _items("bridge_options"),
                "--dhcpclass": _eq("dhcp_class")},
    "lang": {}, "sshpw": {},
}
# command -> check of its positional arguments (joined by a space)
POSITIONAL = {
    "lang": _eq("lang"), "keyboard": _eq("keyboard"), "timezone": _eq("name"),
    "part": _eq("mountpoint"), "partition": _eq("mountpoint"), "sshkey": _eq("key"),
    "volgroup": lambda e, v: [e.get("name"), *e.get("pvs", [])] == v.split(), "logvol": _eq("mountpoint"),
    "raid": lambda e, v: [e.get("mountpoint"), *e.get("members", [])] == v.split(),
    "btrfs": lambda e, v: v.split() in ([e.get("mountpoint"), *e.get("members", [])],
                                        [e.get("mountpoint"), f"LABEL={e.get('volume')}"],
                                        [e.get("mountpoint"), e.get("volume")]),
    "rootpw": lambda e, v: e.get("password") == v or (e.get("lock") and e.get("password") is None),
}


def _carriers(command: str, build: dict, deploy: dict) -> tuple[list[dict], bool]:
    """(spec elements that may carry a `command` line, whether they have `line` fields)."""
    listed = {
        "url": [r for r in build["repos"] if r["name"] == "url"], "repo": build["repos"],
        "timezone": [build["timezone"]], "firewall": [build["firewall"]], "rootpw": [build["rootpw"]],
        "user": build["users"], "group": build["groups"], "sshkey": build["ssh_keys"] + deploy["ssh_keys"],
        "ignoredisk": [deploy["ignoredisk"]], "clearpart": [deploy["clearpart"]], "autopart": [deploy["autopart"]],
        "part": deploy["partitions"], "partition": deploy["partitions"], "bootloader": [deploy["bootloader"]],
        "volgroup": deploy.get("volgroups", []), "logvol": deploy.get("logvols", []), "raid": deploy.get("raids", []),
        "btrfs": deploy.get("btrfs", []),
        "network": deploy["network"],
    }
    if command in listed:
        return [e for e in listed[command] if e], True
    # Commands whose values have no `line` field in the spec: the values themselves must be there.
    values = {
        "lang": {"lang": build["lang"]},
        "keyboard": {"keyboard": build["keyboard"], "keyboard_layouts": build["keyboard_layouts"],
                     "keyboard_switch": build["keyboard_switch"]},
        "selinux": {"selinux": build["selinux"]},
        "services": {"enabled": build["services_enabled"], "disabled": build["services_disabled"]},
        "zerombr": {"zerombr": deploy["zerombr"]},
        "reqpart": {"reqpart": deploy["reqpart"], "reqpart_add_boot": deploy["reqpart_add_boot"]},
    }
    return ([values[command]] if command in values else []), False


def _options(command: str, words: list[str]) -> tuple[list[tuple[str, str | None]], list[str]]:
    """The (option, value) pairs and the positional arguments of one command line."""
    known = OPTIONS.get(command, {})
    options, positional, i = [], [], 0
    while i < len(words):
        word = words[i]
        if word.startswith("--"):
            name, _, value = word.partition("=")
            if "=" not in word and not getattr(known.get(name), "flag", False) and name in known \
                    and i + 1 < len(words) and not words[i + 1].startswith("--"):
                value, i = words[i + 1], i + 1
            options.append((name, value if value != "" or "=" in word else None))
        else:
            positional.append(word)
        i += 1
    return options, positional


class Accounting:
    """Walks a clean case's files line by line; `problems` lists every line or option the specs do not carry."""

    def __init__(self, document: dict, diagnostics: list[dict]):
        self.build, self.deploy = document["build"], document["deploy"]
        self.deferred = {(d["file"], d["line"]) for d in document["deferred_includes"]}
        self.diagnostics = diagnostics
        self.problems: list[str] = []

    def at(self, file: str, line: int) -> list[dict]:
        return [d for d in self.diagnostics if d["file"] == file and d["line"] == line]

    def named(self, file: str, line: int) -> bool:
        """A diagnostic names FILE:LINE as a second place (`overrides the definition at FILE:LINE`)."""
        return any(f"{file}:{line}" in d["message"].replace(f"{d['file']}:{d['line']}:", "") for d in self.diagnostics)

    def ignored_at(self, file: str, line: int) -> set[str]:
        return {d["ignored"] for d in self.at(file, line) if d.get("ignored")}

    def walk(self, path: Path, shown: str) -> None:
        lines = path.read_text().splitlines()
        number = 0
        while number < len(lines):
            text, number = lines[number], number + 1
            words = text.split()
            if not words or words[0].startswith("#"):
                continue
            if words[0] == "%include":
                self._include(path, shown, number, words[1])
            elif words[0] in SECTIONS:
                end = next((i for i in range(number, len(lines)) if lines[i].split()[:1] == ["%end"]), len(lines))
                self._section(shown, number, text, lines[number:end])
                number = end + 1
            else:
                self._command(shown, number, text)

    def _include(self, path: Path, shown: str, number: int, target: str) -> None:
        if (shown, number) in self.deferred:
            return
        included = path.parent / target
        if not included.is_file():
            self.problems.append(f"{shown}:{number}: %include {target}: neither expanded nor deferred")
            return
        self.walk(included, str(Path(shown).parent / target) if Path(shown).parent != Path(".") else target)

    def _section(self, shown: str, number: int, header: str, body: list[str]) -> None:
        words = shlex.split(header)
        name = words[0]
        where = f"{shown}:{number}"
        if {name, " ".join(words[:2])} & self.ignored_at(shown, number):  # `%addon NAME` is ignored by its name
            return
        if name == "%post":
            text = "".join(line + "\n" for line in body)
            if not any(s["line"] == number and s["body"] == text for s in self.build["post"]):
                self.problems.append(f"{where}: %post: no script with this line and exactly this body")
            return
        if name == "%packages":
            self._packages(shown, number, body)
            return
        if name == "%pre":
            text = "".join(line + "\n" for line in body)
            if not any(s["line"] == number and s["script"] == text for s in self.deploy.get("pre_scripts", [])):
                self.problems.append(f"{where}: %pre: no script with this line and exactly this body")
            return
        if name == "%addon":
            self._addon(where, words[1] if len(words) > 1 else "", body)
            return
        self.problems.append(f"{where}: {name}: neither carried nor reported")

    def _packages(self, shown: str, number: int, body: list[str]) -> None:
        p = self.build["packages"]
        for offset, line in enumerate(body, start=number + 1):
            entry = line.split("#", 1)[0].strip()
            if not entry or self.at(shown, offset):
                continue
            if entry.startswith("-@"):
                kept = entry[2:] in p["excluded_groups"]
            elif entry.startswith("-"):
                kept = entry[1:] in p["excluded_names"]
            elif entry.startswith("@"):
                kept = entry[1:].split()[0] in p["groups"]
            else:
                kept = entry in p["names"]
            if not kept:
                self.problems.append(f"{shown}:{offset}: %packages entry {entry!r} is not in the build spec")
        header_options = {"--excludedocs": "nodocs", "--exclude-weakdeps": "exclude_weakdeps", "--multilib": "multilib"}
        ignored = self.ignored_at(shown, number)
        if self.named(shown, number):
            return  # a later header replaces this one's options, with a warning naming this place
        for word in self.header_words(shown, number)[1:]:
            option = word.split("=", 1)[0]
            if f"%packages {option}" in ignored:
                continue
            if option == "--nocore":
                kept = "core" not in p["groups"]
            else:
                kept = option in header_options and p[header_options[option]]
            if not kept:
                self.problems.append(f"{shown}:{number}: %packages {option} is not in the build spec nor reported")

    def header_words(self, shown: str, number: int) -> list[str]:
        return (CORPUS / shown).read_text().splitlines()[number - 1].split()

    def _addon(self, where: str, name: str, body: list[str]) -> None:
        values = dict(line.split("=", 1) for line in (b.split("#", 1)[0].strip() for b in body) if "=" in line)
        if name == "org_metalstream_image":
            dist = self.build["distribution"]
            arch = {"amd64": "x86_64"}.get(values.get("arch", ""), values.get("arch"))
            wanted = {"family": values.get("family"), "release": values.get("release"),
                      "variant": values.get("variant"), "arch": arch, "components": values["components"].split(",") if "components" in values else None}
            for key, value in wanted.items():
                if value is not None and dist[key] != value:
                    self.problems.append(f"{where}: %addon {key}={value} is not the build's {dist[key]!r}")
        elif name == "org_metalstream_deploy":
            if values.get("secure_boot") == "true" and not (self.deploy.get("secure_boot") or {}).get("required"):
                self.problems.append(f"{where}: secure_boot=true is not in the deploy spec")
        else:
            self.problems.append(f"{where}: %addon {name}: neither carried nor reported")

    def _command(self, shown: str, number: int, text: str) -> None:
        where = f"{shown}:{number}"
        words = shlex.split(text, comments=True)
        command = words[0]
        ignored = self.ignored_at(shown, number)
        if command in ignored or self.named(shown, number):
            return  # ignored as a whole, with a warning; or overridden by a later line, which names this one
        elements, with_lines = _carriers(command, self.build, self.deploy)
        if with_lines:
            elements = [e for e in elements if e.get("line") == number]
        options, positional = _options(command, words[1:])
        if command == "network" and not elements and {o for o, _v in options} <= {"--hostname"}:
            elements = [{"hostname": self.deploy["hostname"]}]  # `network --hostname=X` sets the host name only
        if not elements:
            self.problems.append(f"{where}: `{command}`: no spec element carries this line")
            return
        checks = OPTIONS.get(command)
        if checks is None:
            self.problems.append(f"{where}: `{command}`: the test has no option table for it")
            return
        for option, value in options:
            if f"{command} {option}" in ignored:
                continue
            check = checks.get(option)
            if check is None or not any(check(e, value) for e in elements):
                self.problems.append(f"{where}: {command} {option}{'=' + value if value else ''}: not in the spec "
                                     "and not reported as ignored")
        if positional:
            check = POSITIONAL.get(command)
            if check is None or not any(check(e, " ".join(positional)) for e in elements):
                self.problems.append(f"{where}: {command} {' '.join(positional)}: not in the spec")


@pytest.mark.parametrize("name", _cases(clean_only=True, xfail_key="xfail_lines"))
def test_every_line_and_option_of_a_clean_kickstart_is_carried(linted, name):
    document = linted[name]["document"]
    assert document is not None, linted[name]["diagnostics"]
    if name.endswith(".j2"):
        pytest.skip("a template: its lines are checked after rendering by the spec comparison")
    accounting = Accounting(document, document["warnings"])
    accounting.walk(CORPUS / name, name)
    assert accounting.problems == []


# ------------------------------------------------------------------------ the build and deploy code accept them

KERNELS = ("kernel", "kernel-core", "linux-image-")


def _bootable_has_a_kernel(build: BuildSpec, deploy: dict) -> bool:
    """The build's initramfs stage refuses a bootable image (bootloader not `none`) without a kernel; the spec
    promises one by naming it (listed, or added by the split as anaconda adds one; RPM groups other than @core
    may bring one too)."""
    if (deploy.get("bootloader") or {}).get("location") == "none":
        return True
    named = any(n == k or k.endswith("-") and n.startswith(k) for n in build.packages.names for k in KERNELS)
    return named or any(g != "core" for g in build.packages.groups)


def _specs(linted, name) -> tuple[BuildSpec, DeploySpec]:
    document = linted[name]["document"]
    assert document is not None, linted[name]["diagnostics"]
    return _filled(BuildSpec, document["build"]), document["deploy"]


@pytest.mark.parametrize("name", _cases(clean_only=True, family="rpm", xfail_key="xfail_build"))
def test_the_rpm_backend_plans_the_build(linted, name, tmp_path):
    build, _deploy = _specs(linted, name)
    plan = plan_install(build, ks=name, root=tmp_path / "root", confdir=tmp_path / "conf")
    assert plan.argv[:3] == ["dnf", "--installroot", str(tmp_path / "root")]
    assert plan.argv[plan.argv.index("--releasever") + 1] == build.distribution.release
    wanted = build.packages.names + [f"@{g}" for g in build.packages.groups]
    assert plan.argv[plan.argv.index("install") + 1:] == wanted
    assert len(plan.repo_ids) == len(build.repos)
    assert _bootable_has_a_kernel(build, _deploy)


@pytest.mark.parametrize("name", _cases(clean_only=True, family="debian", xfail_key="xfail_build"))
def test_debian_sources_are_planned(linted, name):
    build, _deploy = _specs(linted, name)
    sources = from_repos(build.repos, build.distribution, name)
    assert [s.uris for s in sources] == [[r.baseurl] for r in build.repos]
    assert all(s.suites == [build.distribution.release] for s in sources) and render(sources)
    assert _bootable_has_a_kernel(build, _deploy)


def _plan_stacks(plan: Plan) -> None:
    """A layout with LVM, RAID, btrfs or LUKS: the agent's storage planner lays it out on the disks it names."""
    storage = plan.storage
    names = sorted({p.ondisk for p in storage.partitions if p.ondisk}) or ["sda"]
    disks = [TargetDisk(key=n, path=f"/dev/{n}", size=DISK_BYTES, names=(n, f"/dev/{n}")) for n in names]
    stacks = plan_storage(storage, plan.boot_mode, disks, image_bytes=GIB, memory_bytes=MEMORY_BYTES)
    mounts = [fs.mountpoint for fs in stacks.filesystems]
    assert "/" in mounts
    wanted = [x.mountpoint for x in [*storage.partitions, *storage.logvols, *storage.raids, *storage.btrfs]]
    assert {m for m in wanted if m.startswith("/")} <= set(mounts)


@pytest.mark.parametrize("name", _cases(clean_only=True, xfail_key="xfail_deploy"))
def test_the_agents_planner_accepts_the_deploy_spec(linted, name):
    build, deploy = _specs(linted, name)
    image = ImageRef(name="corpus", url="http://127.0.0.1/corpus.tar.zst", sha256="0" * 64, size=GIB)
    boot_mode = "uefi" if (deploy.get("secure_boot") or {}).get("required") else "both"
    plan = Plan.from_json(Plan(image=image, storage=DeploySpec.from_dict(deploy), boot_mode=boot_mode).to_json())
    if plan.storage.stacked:
        _plan_stacks(plan)
    else:
        layout = plan_layout(DISK_BYTES, plan.boot_mode, plan.storage, image_bytes=GIB, memory_bytes=MEMORY_BYTES)
        mounts = [p.mountpoint for p in layout.partitions]
        assert "/" in mounts
        for part in plan.storage.partitions:
            assert part.mountpoint in mounts or part.mountpoint == "swap" and "swap" in [p.role for p in layout.partitions]
        check_disk_use(plan.storage, disk_names=("sda", "/dev/sda"), existing=())
        if plan.wipe_allowed:
            check_disk_use(plan.storage, disk_names=("sda", "/dev/sda"), existing=("gpt",))
    render = networkmanager_files if build.distribution.family == "rpm" else networkd_files
    files = render(plan.storage.network, {"eth0": "52:54:00:00:00:01", "eth1": "52:54:00:00:00:02"})
    assert bool(files) == bool(plan.storage.network)
