"""The distribution from the command line (--family/--release), the add-on, or the repository URLs:
unchanged kickstarts without the add-on lint, split and build; the precedence is command line > add-on > URLs."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from conftest import REPO, run_cli
from fixtures_rpm import DATA as RPM_DATA
from metalstream.errors import BadInput
from tarball_builder.kickstart import lint_kickstart, parse_kickstart

ADDON = re.compile(r"%addon org_metalstream_image\n.*?%end\n", re.DOTALL)
PACKAGES = "%packages\nkernel\n%end\n"


def without_addon(source: Path, dest: Path) -> Path:
    text = source.read_text()
    assert ADDON.search(text), f"{source} has no add-on to remove"
    dest.write_text(ADDON.sub("", text))
    return dest


def test_debian_sample_without_the_addon_lints_and_splits_with_family_and_release(tmp_path: Path) -> None:
    ks = without_addon(REPO / "kickstarts/debian-minimal.ks", tmp_path / "debian-minimal.ks")
    bare = run_cli("ks", "lint", str(ks))
    assert bare.returncode == 2
    last = len(ks.read_text().splitlines())
    assert (f"{ks}:{last}: error: the distribution is not known: give --family (debian|rpm) and --release "
            "on the command line, or an `%addon org_metalstream_image` section") in bare.stderr

    lint = run_cli("ks", "lint", "--family", "debian", "--release", "bookworm", str(ks))
    assert lint.returncode == 0, lint.stderr
    assert f"{ks}: ok (0 error(s), 0 warning(s))" in lint.stderr
    split = run_cli("ks", "split", "--family", "debian", "--release", "bookworm", str(ks))
    assert split.returncode == 0, split.stderr
    document = json.loads(split.stdout)
    assert document["build"]["distribution"] == {"family": "debian", "release": "bookworm", "variant": None,
                                                 "components": ["main"], "arch": "x86_64", "line": None}
    sample = json.loads(run_cli("ks", "split", "kickstarts/debian-minimal.ks").stdout)
    assert document["build"]["packages"] == {**sample["build"]["packages"], "line": document["build"]["packages"]["line"]}
    assert document["deploy"]["partitions"][0]["mountpoint"] == "/"


def test_rpm_test_repository_kickstart_without_the_addon(tmp_path: Path) -> None:
    ks = without_addon(RPM_DATA / "msdemo.ks.j2", tmp_path / "msdemo.ks.j2")
    url = "file:///srv/msdemo-repo"
    assert run_cli("ks", "lint", "--var", f"repo_url={url}", str(ks)).returncode == 2
    result = run_cli("ks", "split", "--family", "rpm", "--release", "40", "--var", f"repo_url={url}", str(ks))
    assert result.returncode == 0, result.stderr
    build = json.loads(result.stdout)["build"]
    assert (build["distribution"]["family"], build["distribution"]["release"]) == ("rpm", "40")
    assert [r["baseurl"] for r in build["repos"]] == [url, url]


def test_a_releases_path_names_rpm_and_the_release(tmp_path: Path) -> None:
    ks = tmp_path / "spin.ks"
    ks.write_text("url --url=http://MIRROR/fedora/linux/releases/41/Everything/x86_64/os/\n" + PACKAGES)
    dist = parse_kickstart(ks).build.distribution
    assert (dist.family, dist.release, dist.line) == ("rpm", "41", None)
    assert parse_kickstart(ks, release="42").build.distribution.release == "42"  # the command line wins


def test_releasever_names_the_family_but_the_release_must_be_given(tmp_path: Path) -> None:
    ks = tmp_path / "rocky.ks"
    ks.write_text("url --mirrorlist=http://MIRROR/mirrorlist?arch=x86_64&repo=BaseOS-$releasever\n" + PACKAGES)
    [error] = lint_kickstart(ks)
    assert (error.line, error.severity) == (4, "error")  # the last line: something is missing
    assert error.message.startswith("the release is not known (the repository URL uses $releasever): give --release")
    assert (parse_kickstart(ks, release="9").build.distribution.family) == "rpm"


def test_a_debian_archive_url_names_the_family_only(tmp_path: Path) -> None:
    ks = tmp_path / "deb.ks"
    ks.write_text("url --url=http://MIRROR/debian\n%packages\nlinux-image-amd64\n%end\n")
    [error] = lint_kickstart(ks)
    assert error.message.startswith("the release is not known: give --release")
    dist = parse_kickstart(ks, release="trixie").build.distribution
    assert (dist.family, dist.release, dist.components) == ("debian", "trixie", ["main"])
    assert parse_kickstart(ks, family="rpm", release="40").build.distribution.family == "rpm"  # flags win


def test_the_command_line_wins_over_the_addon_with_a_warning_naming_both(tmp_path: Path) -> None:
    ks = tmp_path / "pinned.ks"
    ks.write_text("%addon org_metalstream_image\nfamily=debian\nrelease=bookworm\nvariant=minbase\n%end\n"
                  "%packages\nlinux-image-amd64\n%end\n")
    split = parse_kickstart(ks, family="debian", release="trixie")
    dist = split.build.distribution
    assert (dist.family, dist.release, dist.variant, dist.line) == ("debian", "trixie", "minbase", 1)
    assert [(w.line, w.message) for w in split.warnings] == [
        (3, "--release trixie (command line) overrides release=bookworm (%addon org_metalstream_image): "
            "building release trixie")]
    assert parse_kickstart(ks, family="debian", release="bookworm").warnings == []  # the same: nothing to say
    result = run_cli("ks", "lint", "--release", "trixie", str(ks))
    assert result.returncode == 0 and f"{ks}:3: warning: --release trixie (command line) overrides" in result.stderr


def test_bad_family_or_release_on_the_command_line() -> None:
    family = run_cli("ks", "lint", "--family", "arch", "kickstarts/debian-minimal.ks")
    assert family.returncode == 2 and "--family" in family.stderr and "Traceback" not in family.stderr
    release = run_cli("ks", "lint", "--release", "a b", "kickstarts/debian-minimal.ks")
    assert release.returncode == 2 and "--release: bad release 'a b'" in release.stderr
    with pytest.raises(BadInput, match="unknown family"):
        parse_kickstart(REPO / "kickstarts/debian-minimal.ks", family="gentoo")


def test_help_states_the_precedence() -> None:
    for command in (("ks", "lint"), ("ks", "split"), ("build",)):
        result = run_cli(*command, "--help")
        assert result.returncode == 0, result.stderr
        text = " ".join(result.stdout.split())
        assert "--family" in text and "--release" in text
        assert "first that says: --family/--release, the kickstart's `%addon org_metalstream_image`" in text, command
