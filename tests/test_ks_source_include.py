"""%include expansion: every problem is reported after a missing include, %pre-written and runtime paths
are deferred to deploy time (recorded in the split), and only *.j2 files are rendered."""
from __future__ import annotations

import json
from pathlib import Path

from conftest import run_cli
from tarball_builder.kickstart import lint_kickstart, parse_kickstart

HEADER = "%addon org_metalstream_image\nfamily=debian\nrelease=bookworm\n%end\n"
PACKAGES = "%packages\nlinux-image-amd64\n%end\n"
LAYOUT = "zerombr\nclearpart --all --initlabel\nreqpart\npart / --fstype=ext4 --size=2048 --grow\n"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def located(diagnostics) -> list[tuple[str, int | None, str]]:
    return [(Path(d.file).name, d.line, d.severity) for d in diagnostics]


def test_a_missing_include_does_not_hide_the_problems_after_it(tmp_path: Path) -> None:
    ks = write(tmp_path / "a.ks", HEADER + "%include nowhere.inc\nfrobnicate\ntimezone Mars/Olympus\n" + PACKAGES)
    diagnostics = lint_kickstart(ks)
    assert located(diagnostics) == [("a.ks", 5, "error"), ("a.ks", 6, "error"), ("a.ks", 7, "error")]
    assert diagnostics[0].message == "%include: file not found: nowhere.inc"
    assert "frobnicate" in diagnostics[1].message and "Mars/Olympus" in diagnostics[2].message


def test_a_missing_include_does_not_add_errors_about_what_it_may_have_held(tmp_path: Path) -> None:
    # No %packages and no add-on in the file: the missing include may have had them, so only it is reported.
    ks = write(tmp_path / "b.ks", "lang C.UTF-8\n%include common.inc\n")
    assert [(d.line, d.message) for d in lint_kickstart(ks)] == [(2, "%include: file not found: common.inc")]


def test_problems_in_two_included_files_are_each_reported_in_their_file(tmp_path: Path) -> None:
    write(tmp_path / "one.inc", "lang C.UTF-8\nfrobnicate\n")
    write(tmp_path / "two.inc", "part / --fstype=zfs --size=1\n")
    ks = write(tmp_path / "c.ks", HEADER + "%include one.inc\n%include missing.inc\n%include two.inc\n" + PACKAGES)
    assert located(lint_kickstart(ks)) == [("one.inc", 2, "error"), ("c.ks", 6, "error"), ("two.inc", 1, "error")]


def test_include_of_a_file_written_by_pre_is_deferred_and_recorded(tmp_path: Path) -> None:
    ks = write(tmp_path / "d.ks", HEADER + "%pre\n"
               "echo 'part / --fstype=xfs --size=1 --grow' > /var/tmp/part-include\n%end\n"
               "%include /var/tmp/part-include\n" + LAYOUT + PACKAGES)
    diagnostics = lint_kickstart(ks)
    deferred = [d for d in diagnostics if d.message.startswith("%include")]
    assert located(deferred) == [("d.ks", 8, "warning")]
    assert deferred[0].message == f"%include /var/tmp/part-include: deferred to deploy time (written by %pre at {ks}:5)"
    assert not [d for d in diagnostics if d.severity == "error"]
    split = parse_kickstart(ks)
    assert split.deferred_includes == [{"path": "/var/tmp/part-include", "file": str(ks), "line": 8,
                                        "written_by": f"{ks}:5"}]


def test_include_under_a_runtime_directory_is_deferred_even_without_pre(tmp_path: Path) -> None:
    for path in ("/tmp/layout.ks", "/run/install/net.ks", "/dev/shm/x"):
        ks = write(tmp_path / "e.ks", HEADER + LAYOUT + f"%include {path}\n" + PACKAGES)
        [warning] = [d for d in lint_kickstart(ks) if d.message.startswith("%include")]
        assert (warning.line, warning.severity) == (9, "warning")
        assert warning.message == (f"%include {path}: deferred to deploy time (a runtime path (/tmp, /run, "
                                   "/dev/shm) that exists only on the machine being installed)")
        assert parse_kickstart(ks).deferred_includes[0]["path"] == path


def test_deferred_include_through_the_cli_and_in_json(tmp_path: Path) -> None:
    ks = write(tmp_path / "f.ks", HEADER + LAYOUT + "%include /tmp/host.ks\n" + PACKAGES)
    result = run_cli("ks", "lint", "--json", str(ks))
    assert result.returncode == 0, result.stderr
    assert f"{ks}:9: warning: %include /tmp/host.ks: deferred to deploy time" in result.stderr
    assert json.loads(result.stdout)["deferred_includes"] == [{"path": "/tmp/host.ks", "file": str(ks), "line": 9,
                                                               "written_by": None}]
    strict = run_cli("ks", "lint", "--strict", str(ks))
    assert strict.returncode == 2 and f"{ks}:9: error: %include /tmp/host.ks: deferred" in strict.stderr


def test_a_plain_kickstart_and_its_plain_includes_are_never_rendered(tmp_path: Path) -> None:
    shell = 'n=${#devs[@]}\necho "{# kept #}" {{ literal }} {% also %}\n'
    write(tmp_path / "post.inc", "%post\n" + shell + "%end\n")
    ks = write(tmp_path / "g.ks", HEADER + PACKAGES + "%include post.inc\n")
    split = parse_kickstart(ks)
    assert split.build.post[0].body == shell


def test_a_template_includes_plain_files_unrendered_and_j2_files_rendered(tmp_path: Path) -> None:
    write(tmp_path / "plain.inc", "%post\necho {{ host }}\n%end\n")
    write(tmp_path / "host.inc.j2", "network --hostname={{ host }}\n")
    ks = write(tmp_path / "h.ks.j2", HEADER + "%include plain.inc\n%include host.inc.j2\n" + PACKAGES)
    split = parse_kickstart(ks, variables={"host": "node-4"})
    assert split.build.post[0].body == "echo {{ host }}\n"
    assert split.deploy.hostname == "node-4"
    # --template renders every file, the plain include too
    everything = parse_kickstart(ks, variables={"host": "node-4"}, template=True)
    assert everything.build.post[0].body == "echo node-4\n"


def test_only_a_path_pre_names_as_a_whole_is_deferred(tmp_path: Path) -> None:
    ks = write(tmp_path / "i.ks", HEADER + "%pre\necho x > /var/tmp/partition\n%end\n"
               "%include /var/tmp/part\n" + LAYOUT + PACKAGES)
    [error] = [d for d in lint_kickstart(ks) if d.message.startswith("%include")]
    assert (error.line, error.severity, error.message) == (8, "error", "%include: file not found: /var/tmp/part")


def test_variables_for_a_plain_kickstart_that_includes_a_template_are_used(tmp_path: Path) -> None:
    write(tmp_path / "host.inc.j2", "network --hostname={{ host }}\n")
    ks = write(tmp_path / "j.ks", HEADER + "%include host.inc.j2\n" + PACKAGES)
    assert parse_kickstart(ks, variables={"host": "node-5"}).deploy.hostname == "node-5"
    plain = write(tmp_path / "k.ks", HEADER + PACKAGES)
    [error] = lint_kickstart(plain, variables={"host": "node-5"})
    assert (error.file, error.line, error.severity) == (str(plain), None, "error")
    assert error.message.startswith(f"--var given, but {plain} is not a template and includes none")
