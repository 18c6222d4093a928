"""The pykickstart adapter: pinned syntax, every problem located, warnings captured, %include handled."""
from __future__ import annotations

from pathlib import Path

import pytest
from pykickstart.version import DEVEL, F40

from metalstream.errors import EXIT_BAD_INPUT, BadInput
from tarball_builder.kickstart import SYNTAX_VERSION, KickstartError, lint_kickstart, parse_kickstart
from tarball_builder.spec import Diagnostic

HEADER = "%addon org_metalstream_image\nfamily=debian\nrelease=bookworm\n%end\n"  # lines 1-4
PACKAGES = "%packages\nlinux-image-amd64\n%end\n"


def write(tmp_path: Path, text: str, name: str = "test.ks") -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def located(diagnostics: list[Diagnostic]) -> list[tuple[str, int | None, str]]:
    return [(Path(d.file).name, d.line, d.severity) for d in diagnostics]


def test_syntax_version_is_pinned() -> None:
    assert SYNTAX_VERSION == F40 and SYNTAX_VERSION != DEVEL


def test_every_error_is_reported_not_just_the_first(tmp_path: Path) -> None:
    ks = write(tmp_path, HEADER + "frobnicate\nselinux --sometimes\npart / --size=x\nbootloader --location=boot\n" + PACKAGES)
    diagnostics = lint_kickstart(ks)
    assert located(diagnostics) == [("test.ks", 5, "error"), ("test.ks", 6, "error"), ("test.ks", 7, "error"),
                                    ("test.ks", 8, "error")]
    assert "unknown command 'frobnicate'" in diagnostics[0].message
    assert str(diagnostics[1]) == f"{ks}:6: error: selinux: unrecognized arguments: --sometimes"


def test_parse_raises_kickstart_error_with_all_diagnostics(tmp_path: Path) -> None:
    ks = write(tmp_path, HEADER + "frobnicate\nselinux --sometimes\n" + PACKAGES)
    with pytest.raises(KickstartError) as caught:
        parse_kickstart(ks)
    error = caught.value
    assert isinstance(error, BadInput) and error.exit_code == EXIT_BAD_INPUT
    assert [d.line for d in error.diagnostics] == [5, 6]
    assert error.location == f"{ks}:5"
    assert "and 1 more problem" in str(error)


def test_cosmetic_commands_and_sections_are_warnings_naming_what_is_ignored(tmp_path: Path) -> None:
    ks = write(tmp_path, HEADER + "text\nreboot\nfirstboot --disable\nbootloader --driveorder=sda\n"
                                  "%pre-install\necho hi\n%end\n" + PACKAGES + "%addon com_redhat_kdump --disable\n%end\n")
    diagnostics = lint_kickstart(ks)
    assert located(diagnostics) == [("test.ks", line, "warning") for line in (5, 6, 7, 8, 9, 15)]
    assert [d.ignored for d in diagnostics] == ["text", "reboot", "firstboot", "bootloader --driveorder",
                                                "%pre-install", "%addon com_redhat_kdump"]
    messages = [d.message for d in diagnostics]
    assert "`reboot`" in messages[1] and "always reboots" in messages[1]
    assert "%pre-install scripts are not run" in messages[4]
    assert "com_redhat_kdump" in messages[5]
    split = parse_kickstart(ks)  # warnings alone do not fail
    assert split.warnings == diagnostics
    strict = lint_kickstart(ks, strict=True)
    assert {d.severity for d in strict} == {"error"} and len(strict) == 6
    with pytest.raises(KickstartError) as caught:
        parse_kickstart(ks, strict=True)
    assert len(caught.value.diagnostics) == 6


@pytest.mark.parametrize("options", ["--disable", ""])
def test_kdump_left_off_is_ignored_and_kdump_asked_for_is_an_error(tmp_path: Path, options: str) -> None:
    [off] = lint_kickstart(write(tmp_path, HEADER + PACKAGES + f"%addon com_redhat_kdump {options}\n%end\n"))
    assert (off.line, off.severity, off.ignored) == (8, "warning", "%addon com_redhat_kdump")
    ks = write(tmp_path, HEADER + PACKAGES + "%addon com_redhat_kdump --enable --reserve-mb=auto\n%end\n")
    [on] = lint_kickstart(ks)
    assert (on.line, on.severity) == (8, "error")
    assert on.message.startswith("%addon com_redhat_kdump --enable: kdump is not set up by metalstream: ")
    assert "crashkernel=" in on.message and "services --enabled=kdump" in on.message


def test_other_anaconda_addons_are_ignored_by_name(tmp_path: Path) -> None:
    [ignored] = lint_kickstart(write(tmp_path, HEADER + PACKAGES + "%addon org_fedora_oscap\nprofile = x\n%end\n"))
    assert (ignored.line, ignored.severity, ignored.ignored) == (8, "warning", "%addon org_fedora_oscap")


def test_what_would_change_the_result_is_an_error_at_its_line(tmp_path: Path) -> None:
    ks = write(tmp_path, HEADER + "iscsiname iqn.2026-01.example:node\nlang en_US.UTF-8 --addsupport=de_DE.UTF-8\n"
                                  "part / --size=1 --grow --noformat\nbootloader --iscrypted --password=x\n"
                                  "%certificate --filename=a.pem --dir=/etc/pki\nX\n%end\n" + PACKAGES)
    diagnostics = [d for d in lint_kickstart(ks) if not d.message.startswith("no EFI system or BIOS boot partition")]
    assert located(diagnostics) == [("test.ks", line, "error") for line in (5, 6, 7, 8, 8, 9)]
    messages = [d.message for d in diagnostics]
    assert messages[0].startswith("`iscsiname`: not supported yet")
    assert messages[1].startswith("lang --addsupport: not supported")
    assert messages[2].startswith("part --noformat: not supported")
    assert {messages[3], messages[4]} == {"bootloader --iscrypted: not supported: a GRUB password is not supported yet",
                                          "bootloader --password: not supported: a GRUB password is not supported yet"}
    assert "%certificate" in messages[5]


def test_pykickstart_warnings_are_captured_and_located(tmp_path: Path, capsys) -> None:
    ks = write(tmp_path, HEADER + "timezone Etc/UTC --isUtc\n" + PACKAGES)
    diagnostics = lint_kickstart(ks)
    assert located(diagnostics) == [("test.ks", 5, "warning")]
    assert "--isUtc option has been deprecated" in diagnostics[0].message
    assert "on line" not in diagnostics[0].message
    assert capsys.readouterr() == ("", "")  # nothing printed behind our back


def test_missing_end_is_located_at_the_section_header(tmp_path: Path) -> None:
    ks = write(tmp_path, HEADER + PACKAGES + "%post\necho one\n\n")
    [diagnostic] = lint_kickstart(ks)
    assert (diagnostic.line, diagnostic.severity) == (8, "error")
    assert "%post section is not closed with %end" in diagnostic.message


def test_errors_inside_an_included_file_name_that_file(tmp_path: Path) -> None:
    write(tmp_path, "# layout\nreqpart\npart / --fstype=ntfs --size=10\n", "parts/layout.inc")
    ks = write(tmp_path, HEADER + "%include parts/layout.inc\nfrobnicate\n" + PACKAGES)
    diagnostics = lint_kickstart(ks)
    # Reported in reading order: the included file's line 3 comes before the kickstart's line 6.
    assert [(d.file, d.line) for d in diagnostics] == [(str(tmp_path / "parts" / "layout.inc"), 3), (str(ks), 6)]
    assert "unsupported --fstype=ntfs" in diagnostics[0].message


def test_include_is_relative_to_the_including_file_and_nests(tmp_path: Path) -> None:
    write(tmp_path, "%include packages.inc\n", "inc/outer.inc")
    write(tmp_path, PACKAGES, "inc/packages.inc")
    ks = write(tmp_path, HEADER + "%include inc/outer.inc\n")
    split = parse_kickstart(ks)
    assert split.build.packages.names == ["linux-image-amd64"]
    assert split.build.packages.line == 1  # line 1 of inc/packages.inc


def test_missing_include_is_located_at_the_include_line(tmp_path: Path) -> None:
    ks = write(tmp_path, HEADER + "lang C.UTF-8\n%include nowhere.inc\n" + PACKAGES)
    [diagnostic] = lint_kickstart(ks)
    assert (diagnostic.file, diagnostic.line) == (str(ks), 6)
    assert diagnostic.message == "%include: file not found: nowhere.inc"


def test_unreadable_kickstart_is_a_diagnostic_not_an_exception(tmp_path: Path) -> None:
    [diagnostic] = lint_kickstart(tmp_path / "absent.ks")
    assert diagnostic.severity == "error" and "cannot read" in diagnostic.message
    binary = tmp_path / "binary.ks"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    assert lint_kickstart(binary)[0].severity == "error"


def test_templated_kickstart_needs_its_variables(tmp_path: Path) -> None:
    ks = write(tmp_path, HEADER + "network --hostname={{ host }}\n" + PACKAGES)
    [diagnostic] = lint_kickstart(ks, template=True)
    assert (diagnostic.line, diagnostic.message) == (5, "undefined variable 'host'")
    assert parse_kickstart(ks, variables={"host": "web-3"}, template=True).deploy.hostname == "web-3"


def test_addon_keys_are_validated(tmp_path: Path) -> None:
    ks = write(tmp_path, "%addon org_metalstream_image\nfamily=debian\nrelease=bookworm\nvariant=tiny\n"
                         "components=main,contrib\narch=aarch64\nnonsense\n%end\n" + PACKAGES)
    diagnostics = lint_kickstart(ks)
    assert [(d.line, d.severity) for d in diagnostics] == [(4, "error"), (6, "error"), (7, "error")]
    assert "unknown variant 'tiny'" in diagnostics[0].message
    assert "x86_64 only" in diagnostics[1].message
    assert "expected KEY=VALUE" in diagnostics[2].message


def test_debian_components_and_variant(tmp_path: Path) -> None:
    ks = write(tmp_path, "%addon org_metalstream_image\nfamily=debian\nrelease=trixie\nvariant=essential\n"
                         "components=main, contrib non-free-firmware\n%end\n" + PACKAGES)
    dist = parse_kickstart(ks).build.distribution
    assert (dist.release, dist.variant, dist.components) == ("trixie", "essential", ["main", "contrib", "non-free-firmware"])
