"""`metalstream ks` through the real command line: the acceptance commands of issue #2."""
from __future__ import annotations

import json
from pathlib import Path

from conftest import REPO, run_cli

SAMPLES = sorted(str(p.relative_to(REPO)) for pattern in ("*.ks", "*.ks.j2") for p in (REPO / "kickstarts").glob(pattern))
WARNS = ("%addon org_metalstream_image\nfamily=debian\nrelease=bookworm\n%end\n"
         "reboot\n%packages\nlinux-image-amd64\n%end\n")


def test_sample_kickstarts_lint_clean() -> None:
    assert {Path(s).name for s in SAMPLES} >= {"debian-minimal.ks", "fedora-minimal.ks.j2", "installer.ks"}
    result = run_cli("ks", "lint", *SAMPLES)
    assert result.returncode == 0, result.stderr
    assert ": error: " not in result.stderr and ": warning: " not in result.stderr
    for sample in SAMPLES:
        assert f"{sample}: ok (0 error(s), 0 warning(s))" in result.stderr


def test_lint_json_of_fedora_shows_packages_and_layout() -> None:
    result = run_cli("ks", "lint", "--json", "kickstarts/fedora-minimal.ks.j2")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert set(document) >= {"build", "deploy", "warnings"}
    assert "kernel" in document["build"]["packages"]["names"] and "core" in document["build"]["packages"]["groups"]
    assert document["build"]["distribution"]["family"] == "rpm"
    deploy = document["deploy"]
    assert deploy["reqpart"] is True
    assert deploy["partitions"][0]["mountpoint"] == "/" and deploy["partitions"][0]["line"]
    assert deploy["bootloader"]["location"] == "mbr"
    assert document["warnings"] == []


def test_split_prints_the_same_document_and_can_write_a_file(tmp_path: Path) -> None:
    lint = run_cli("ks", "lint", "--json", "kickstarts/debian-minimal.ks")
    out = tmp_path / "spec.json"
    split = run_cli("ks", "split", "kickstarts/debian-minimal.ks", "-o", str(out))
    assert split.returncode == 0, split.stderr
    assert json.loads(out.read_text()) == json.loads(lint.stdout)


def test_warnings_pass_unless_strict(tmp_path: Path) -> None:
    ks = tmp_path / "warns.ks"
    ks.write_text(WARNS)
    relaxed = run_cli("ks", "lint", str(ks))
    assert relaxed.returncode == 0
    assert f"{ks}:5: warning: `reboot`" in relaxed.stderr
    strict = run_cli("ks", "lint", "--strict", str(ks))
    assert strict.returncode == 2
    assert f"{ks}:5: error: `reboot`" in strict.stderr


def test_lint_of_several_files_fails_if_one_fails(tmp_path: Path) -> None:
    bad = tmp_path / "bad.ks"
    bad.write_text("frobnicate\n")
    result = run_cli("ks", "lint", "kickstarts/installer.ks", str(bad))
    assert result.returncode == 2
    assert "kickstarts/installer.ks: ok" in result.stderr
    assert f"{bad}:1: error: unknown command 'frobnicate'" in result.stderr


def test_lint_and_render_take_template_variables(tmp_path: Path) -> None:
    ks = tmp_path / "host.ks.j2"
    ks.write_text(WARNS.replace("reboot", "network --hostname={{ host }}"))
    missing = run_cli("ks", "lint", str(ks))
    assert missing.returncode == 2 and f"{ks}:5: error: undefined variable 'host'" in missing.stderr
    given = run_cli("ks", "lint", "--json", "--var", "host=node-9", str(ks))
    assert given.returncode == 0, given.stderr
    assert json.loads(given.stdout)["deploy"]["hostname"] == "node-9"

    out = tmp_path / "rendered.ks"
    failed = run_cli("ks", "render", str(ks), "-o", str(out))
    assert failed.returncode == 2 and f"{ks}:5: undefined variable 'host'" in failed.stderr
    assert not out.exists() and list(tmp_path.iterdir()) == [ks]  # nothing written, no temp file left
    rendered = run_cli("ks", "render", str(ks), "--var", "host=node-9", "-o", str(out))
    assert rendered.returncode == 0, rendered.stderr
    assert "network --hostname=node-9\n" in out.read_text()
    to_stdout = run_cli("ks", "render", str(ks), "--var", "host=node-9")
    assert to_stdout.stdout == out.read_text()


def test_bad_var_and_help() -> None:
    bad = run_cli("ks", "lint", "--var", "oops", "kickstarts/installer.ks")
    assert bad.returncode == 2 and "NAME=VALUE" in bad.stderr and "Traceback" not in bad.stderr
    help_text = run_cli("ks", "lint", "--help")
    assert help_text.returncode == 0 and "F40" in help_text.stdout and "--strict" in help_text.stdout


def test_a_plain_kickstart_is_never_rendered_and_var_for_it_is_an_error(tmp_path: Path) -> None:
    ks = tmp_path / "shell.ks"
    ks.write_text(WARNS.replace("reboot\n", "") + "%post\nn=${#dev}\necho '{# stays #}' {{ x }}\n%end\n")
    result = run_cli("ks", "lint", "--json", str(ks))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["build"]["post"][0]["body"] == "n=${#dev}\necho '{# stays #}' {{ x }}\n"

    with_var = run_cli("ks", "lint", "--var", "x=1", str(ks))
    assert with_var.returncode == 2
    assert (f"{ks}: error: --var given, but {ks} is not a template and includes none: only files named *.j2 "
            "are rendered (or every file with --template)") in with_var.stderr
    templated = run_cli("ks", "split", "--template", "--var", "x=1", str(ks))
    assert templated.returncode == 0, templated.stderr
    assert json.loads(templated.stdout)["build"]["post"][0]["body"] == "n=${#dev}\necho '{# stays #}' 1\n"
    render = run_cli("ks", "render", str(ks))
    assert render.returncode == 2 and f"{ks}: not a template: only files named *.j2 are rendered" in render.stderr


def test_template_mode_keeps_shell_braces_literal(tmp_path: Path) -> None:
    ks = tmp_path / "t.ks.j2"
    ks.write_text(WARNS.replace("reboot\n", "network --hostname={{ host }}\n") + "%post\nn=${#dev}\n%end\n")
    result = run_cli("ks", "split", "--var", "host=h1", str(ks))
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["build"]["post"][0]["body"] == "n=${#dev}\n" and document["deploy"]["hostname"] == "h1"
    rendered = run_cli("ks", "render", str(ks), "--var", "host=h1")
    assert rendered.returncode == 0 and "n=${#dev}\n" in rendered.stdout


def test_lint_lists_every_ignored_command_and_option_per_file(tmp_path: Path) -> None:
    ks = tmp_path / "ui.ks"
    ks.write_text(WARNS.replace("reboot\n", "text\nskipx\nreboot\n"))
    clean = run_cli("ks", "lint", "kickstarts/installer.ks", str(ks))
    assert clean.returncode == 0, clean.stderr
    lines = clean.stderr.splitlines()
    ignored = [line for line in lines if ": ignored: " in line]
    assert ignored == [f"{ks}: ignored: text, skipx, reboot"]
    assert lines.index(ignored[0]) == lines.index(f"{ks}: ok (0 error(s), 3 warning(s))") + 1
    document = json.loads(run_cli("ks", "lint", "--json", str(ks)).stdout)
    assert document["ignored"] == ["text", "skipx", "reboot"]
    assert [w["ignored"] for w in document["warnings"]] == ["text", "skipx", "reboot"]


def test_bench_ks_lint_times_both_tools_on_the_same_files(tmp_path: Path) -> None:
    from bench.ks_lint import bench_ks_lint, kickstart_sources

    assert len(kickstart_sources()) >= 20 and not any("%include" in p.read_text() for p in kickstart_sources())
    lines: list[str] = []
    result = bench_ks_lint(1, tmp_path, lines.append, count=5)
    assert result["files"] == 5 and result["goal"] == "<= 1.5" and isinstance(result["met"], bool)
    assert result["metalstream_seconds"]["median"] > 0 and result["ksvalidator_seconds"]["median"] > 0
    assert result["ratio"] == round(result["metalstream_seconds"]["median"] / result["ksvalidator_seconds"]["median"], 3)
    assert not (tmp_path / "ks-lint").exists()
