"""`%addon org_metalstream_deploy` with `secure_boot=` through the real `metalstream ks` command line: it
reaches the deploy spec, and `ks lint` warns at its line when %packages lacks the family's signed packages."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import REPO, run_cli

DEBIAN = "%addon org_metalstream_image\nfamily=debian\nrelease=bookworm\n%end\n"
RPM = "%addon org_metalstream_image\nfamily=rpm\nrelease=40\n%end\nurl --url=file:///srv/mirror/fedora/\n"
ASK = "%addon org_metalstream_deploy\nsecure_boot=true\n%end\n"


def _packages(*names: str) -> str:
    return "%packages\n" + "".join(f"{name}\n" for name in names) + "%end\n"


def _write(tmp_path: Path, text: str, name: str = "sb.ks") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_the_secure_boot_sample_lints_clean_and_asks_for_secure_boot() -> None:
    lint = run_cli("ks", "lint", "kickstarts/debian-secureboot.ks")
    assert lint.returncode == 0 and "kickstarts/debian-secureboot.ks: ok (0 error(s), 0 warning(s))" in lint.stderr
    split = run_cli("ks", "split", "kickstarts/debian-secureboot.ks")
    assert split.returncode == 0, split.stderr
    document = json.loads(split.stdout)
    names = document["build"]["packages"]["names"]
    assert {"shim-signed", "grub-efi-amd64-signed", "mokutil", "linux-image-amd64", "openssh-server"} <= set(names)
    lines = (REPO / "kickstarts" / "debian-secureboot.ks").read_text().splitlines()
    assert document["deploy"]["secure_boot"] == {"required": True, "line": lines.index("secure_boot=true") + 1}
    assert document["deploy"]["bootloader"]["location"] == "mbr"  # debian-minimal's deploy settings stay


@pytest.mark.parametrize("family, packages, missing", [
    (DEBIAN, ("linux-image-amd64", "shim-signed"), "grub-efi-amd64-signed"),
    (DEBIAN, ("linux-image-amd64",), "shim-signed, grub-efi-amd64-signed"),
    (DEBIAN, ("shim-signed", "grub-efi-amd64-signed", "linux-image-6.1.0-21-amd64-unsigned"), "linux-image-*"),
    (RPM, ("kernel", "grub2-efi-x64", "grub2-pc"), "shim-x64"),
    (RPM, ("kernel-core", "shim-x64"), "grub2-efi-x64"),  # no kernel listed at all: `kernel` is added
])
def test_missing_signed_packages_are_a_warning_at_the_setting(tmp_path, family, packages, missing) -> None:
    ks = _write(tmp_path, family + _packages(*packages) + ASK)
    line = ks.read_text().splitlines().index("secure_boot=true") + 1
    relaxed = run_cli("ks", "lint", str(ks))
    assert relaxed.returncode == 0, relaxed.stderr
    assert f"{ks}:{line}: warning: secure_boot=true but %packages lacks {missing}: " in relaxed.stderr
    assert f"{ks}: ok (0 error(s), 1 warning(s))" in relaxed.stderr
    strict = run_cli("ks", "lint", "--strict", str(ks))
    assert strict.returncode == 2 and f"{ks}:{line}: error: secure_boot=true" in strict.stderr


@pytest.mark.parametrize("text", [
    DEBIAN + _packages("linux-image-amd64", "shim-signed", "grub-efi-amd64-signed") + ASK,
    RPM + _packages("kernel-core", "shim-x64", "grub2-efi-x64") + ASK,
    DEBIAN + _packages("linux-image-amd64") + ASK.replace("true", "false"),
    DEBIAN + _packages("linux-image-amd64"),
])
def test_no_warning_with_the_signed_packages_or_without_secure_boot(tmp_path, text) -> None:
    ks = _write(tmp_path, text)
    result = run_cli("ks", "lint", str(ks))
    assert result.returncode == 0 and f"{ks}: ok (0 error(s), 0 warning(s))" in result.stderr, result.stderr


def test_the_warning_names_the_included_file_the_setting_is_in(tmp_path) -> None:
    _write(tmp_path, ASK, "deploy.ks")
    ks = _write(tmp_path, DEBIAN + _packages("linux-image-amd64") + "%include deploy.ks\n")
    result = run_cli("ks", "lint", str(ks))
    assert f"{tmp_path / 'deploy.ks'}:2: warning: secure_boot=true but %packages lacks shim-signed" in result.stderr


@pytest.mark.parametrize("addon, line, words", [
    ("%addon org_metalstream_deploy\nsecure_boot=yes\n%end\n", 2, "secure_boot must be true or false, not 'yes'"),
    ("%addon org_metalstream_deploy\nsecureboot=true\n%end\n", 2, "unknown key 'secureboot' (known: secure_boot)"),
    ("%addon org_metalstream_deploy\nsecure_boot=true\nsecure_boot=true\n%end\n", 3, "secure_boot given twice"),
    ("%addon org_metalstream_deploy --on\nsecure_boot=true\n%end\n", 1, "takes no options"),
    (ASK + ASK, 4, "org_metalstream_deploy given twice (first at line"),
])
def test_a_bad_deploy_add_on_is_an_error_at_its_line(tmp_path, addon, line, words) -> None:
    ks = _write(tmp_path, DEBIAN + _packages("linux-image-amd64", "shim-signed", "grub-efi-amd64-signed") + addon)
    result = run_cli("ks", "lint", str(ks))
    first = len((DEBIAN + _packages("linux-image-amd64", "shim-signed", "grub-efi-amd64-signed")).splitlines())
    assert result.returncode == 2
    assert f"{ks}:{first + line}: error: %addon org_metalstream_deploy" in result.stderr and words in result.stderr
    assert "anaconda add-ons are not supported" not in result.stderr
