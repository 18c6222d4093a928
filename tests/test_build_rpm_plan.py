"""Pure planning of the RPM backend: dnf configuration, repository file, command line, dracut argv."""
from __future__ import annotations

import configparser
from pathlib import Path

import pytest

from metalstream.errors import BadInput, OperationFailed
from tarball_builder.backends import backend_for
from tarball_builder.backends.rpm import RpmBackend, parse_package_list
from tarball_builder.backends.rpm_plan import entry_line, explain_failure, plan_install
from tarball_builder.spec import BuildSpec, Distribution, Packages, Repo

ROOT = Path("/build/root")
CONF = Path("/build/dnf")


def spec(packages: Packages | None = None, repos: list[Repo] | None = None) -> BuildSpec:
    return BuildSpec(distribution=Distribution(family="rpm", release="40", line=1),
                     repos=[Repo(name="url", baseurl="file:///srv/repo", line=7)] if repos is None else repos,
                     packages=packages or Packages(names=["msdemo"], line=12))


def ini(text: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(text)
    return parser


def test_command_line_uses_only_the_builds_own_configuration():
    plan = plan_install(spec(Packages(names=["msdemo", "kernel-core"], groups=["core", "^server-product"],
                                      line=12)), ks="a.ks", root=ROOT, confdir=CONF)
    argv = plan.argv
    assert argv[:3] == ["dnf", "--installroot", str(ROOT)]
    assert argv[argv.index("--releasever") + 1] == "40"
    assert argv[argv.index("--config") + 1] == str(CONF / "dnf.conf")
    assert f"--setopt=reposdir={CONF / 'repos.d'}" in argv
    assert "--noplugins" in argv and "--assumeyes" in argv
    assert argv[argv.index("install") + 1:] == ["msdemo", "kernel-core", "@core", "@^server-product"]


def test_packages_options_become_dnf_settings():
    packages = Packages(names=["msdemo"], excluded_names=["msexcluded", "plymouth"], nodocs=True,
                        exclude_weakdeps=True, line=12)
    main = ini(plan_install(spec(packages), ks="a.ks", root=ROOT, confdir=CONF).conf)["main"]
    assert main["tsflags"] == "nodocs"
    assert main["install_weak_deps"] == "False"
    assert main["excludepkgs"] == "msexcluded,plymouth"
    assert main["keepcache"] == "True" and main["cachedir"] == "/var/cache/dnf"
    assert main["skip_if_unavailable"] == "False" and main["best"] == "True"
    assert main["gpgcheck"] == "False"

    plain = ini(plan_install(spec(), ks="a.ks", root=ROOT, confdir=CONF).conf)["main"]
    assert "tsflags" not in plain and "excludepkgs" not in plain
    assert plain["install_weak_deps"] == "True"


def test_kickstart_repositories_become_one_repo_file():
    repos = [Repo(name="url", metalink="https://example.invalid/metalink?repo=fedora-40", line=3),
             Repo(name="my updates", mirrorlist="http://example.invalid/mirrors", cost=10,
                  includepkgs=["kernel*"], excludepkgs=["foo", "bar"], line=4)]
    plan = plan_install(spec(repos=repos), ks="a.ks", root=ROOT, confdir=CONF)
    parsed = ini(plan.repo_file)
    assert parsed.sections() == ["url", "my_updates"]
    assert parsed["url"]["metalink"] == "https://example.invalid/metalink?repo=fedora-40"
    updates = parsed["my_updates"]
    assert updates["name"] == "my updates"
    assert updates["mirrorlist"] == "http://example.invalid/mirrors"
    assert (updates["cost"], updates["includepkgs"], updates["excludepkgs"]) == ("10", "kernel*", "foo,bar")
    assert updates["enabled"] == "1" and updates["skip_if_unavailable"] == "0"
    assert plan.repo_ids["my_updates"] is repos[1]


@pytest.mark.parametrize(("packages", "repos", "message", "location"), [
    (Packages(names=["a"], excluded_groups=["docs"], line=12), None, "-@docs", "a.ks:12"),
    (Packages(names=["a"], default=True, line=12), None, "--default", "a.ks:12"),
    (Packages(line=12), None, "nothing to install", "a.ks:12"),
    (Packages(names=["--oops"], line=12), None, "'--oops' is not a package", "a.ks:12"),
    (None, [], "needs a `url` or `repo` line", "a.ks"),
    (None, [Repo(name="a b", baseurl="file:///x", line=3), Repo(name="a_b", baseurl="file:///y", line=4)],
     "same dnf repository id 'a_b'", "a.ks:4"),
    (None, [Repo(name="empty", line=5)], "no --baseurl, --mirrorlist or --metalink", "a.ks:5"),
])
def test_what_dnf_cannot_do_is_bad_input_located(packages, repos, message, location):
    with pytest.raises(BadInput) as caught:
        plan_install(spec(packages, repos), ks="a.ks", root=ROOT, confdir=CONF)
    assert message in caught.value.reason
    assert caught.value.location == location


def test_entry_line_finds_the_package_inside_its_section():
    text = "url --url=x\n%packages\n# comment\nmsdemo\n  nosuch   # why\n%end\nnosuch\n"
    assert entry_line(text, 2, "nosuch") == 5
    assert entry_line(text, 2, "other") is None
    assert entry_line(text, 1, "nosuch") is None  # line 1 is not a %packages header: no guessing


def test_unexplained_dnf_failure_keeps_dnfs_last_words():
    plan = plan_install(spec(), ks="a.ks", root=ROOT, confdir=CONF)
    error = explain_failure("Downloading Packages:\n", "Error: Transaction test error:\n  disk full\n",
                            plan, spec(), ks="a.ks")
    assert isinstance(error, OperationFailed) and not isinstance(error, BadInput)
    assert "disk full" in str(error)


def test_dracut_argv_is_generic_and_reproducible():
    backend = RpmBackend()
    argv = backend.initramfs_argv("6.8.5-301.fc40.x86_64")
    assert argv[0] == "dracut"
    assert "--no-hostonly" in argv and "--force" in argv and "--reproducible" in argv
    assert argv[argv.index("--kver") + 1] == "6.8.5-301.fc40.x86_64"
    assert argv[-1] == backend.initramfs_path("6.8.5-301.fc40.x86_64") == "/boot/initramfs-6.8.5-301.fc40.x86_64.img"


def test_cache_globs_drop_caches_but_keep_the_rpmdb():
    globs = RpmBackend().cache_globs()
    assert "var/lib/rpm/__db.*" in globs and "var/cache/dnf/*" in globs
    assert not any(g.endswith(("rpmdb.sqlite", "rpmdb.sqlite-wal", "Packages")) for g in globs)


def test_package_list_is_sorted_and_skips_gpg_keys():
    text = "zlib\t1.3-1.fc40\tx86_64\ngpg-pubkey\ta15b79cc-63d04c2c\t(none)\nbash\t5.2.26-3.fc40\tx86_64\n" \
           "shadow-utils\t2:4.15.1-1.fc40\tx86_64\n"
    assert parse_package_list(text) == [
        {"name": "bash", "version": "5.2.26-3.fc40", "arch": "x86_64"},
        {"name": "shadow-utils", "version": "2:4.15.1-1.fc40", "arch": "x86_64"},
        {"name": "zlib", "version": "1.3-1.fc40", "arch": "x86_64"},
    ]


def test_registry_gives_the_rpm_backend():
    assert backend_for("rpm").family == "rpm"
