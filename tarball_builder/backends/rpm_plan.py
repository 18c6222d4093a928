"""Pure planning for the RPM backend: dnf's configuration, the repository file and the dnf command line,
and the translation of dnf's failure output into located errors. Nothing here touches a disk.

Decisions (see RpmBackend for the rest):
- dnf reads only what is written here: `--config` names our own dnf.conf, `reposdir` our own directory,
  plugins are off. Nothing of the build host's dnf configuration leaks into an image.
- GPG checks are off for kickstart repositories: a kickstart has no way to name a signing key (anaconda
  behaves the same), so trust comes from the transport (https with certificate checks, or a local file://).
- `%packages` maps to dnf as: names and `@group`s are installed, `-name` becomes `excludepkgs` (dnf then
  refuses to pull it in as a dependency and says which package needed it), `--nodocs` is
  `tsflags=nodocs`, `--exclude-weakdeps` is `install_weak_deps=False`, `--multilib` is
  `multilib_policy=all`. An empty %packages arrives here as `@core` (the kickstart split adds it, as
  anaconda does; `--nocore` keeps it out); otherwise no `@core` is added implicitly: an image holds what
  its %packages lists, plus dependencies. `--default` and `-@group` are refused (the kickstart lint
  refuses them too, at their line).
- `best=True` and `skip_if_unavailable=False`: a build installs exactly what was asked from every
  repository, or fails; it never quietly picks something else.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from metalstream.errors import BadInput, MetalstreamError, OperationFailed

from ..spec import BuildSpec, Packages, Repo

DBPATH = "/var/lib/rpm"  # where the image's rpmdb is written (see RpmBackend)
CACHEDIR = "/var/cache/dnf"  # dnf's cache inside the root; the build cache is bind-mounted there
INSTALL_TIMEOUT = 3600.0
_REPO_ID_BAD = re.compile(r"[^A-Za-z0-9_.:-]")


@dataclass(frozen=True)
class DnfPlan:
    argv: list[str]  # the dnf command line (paths as seen on the build host)
    conf: str  # text of dnf.conf
    repo_file: str  # text of the .repo file holding every kickstart repository
    repo_ids: dict[str, Repo]  # dnf repo id -> the kickstart repository it came from


def where(ks: str, line: int | None) -> str:
    return f"{ks}:{line}" if line else ks


def repo_id(repo: Repo) -> str:
    """A dnf repo id for a kickstart repository name (dnf allows letters, digits and `_.:-`)."""
    return _REPO_ID_BAD.sub("_", repo.name) or "repo"


def repo_label(repo: Repo) -> str:
    return "url" if repo.name == "url" else f"repo {repo.name}"


def repo_section(repo: Repo) -> str:
    """One [id] section of a .repo file (also what `repo --install` writes into the image)."""
    lines = [f"[{repo_id(repo)}]", f"name={repo.name}"]
    for key in ("baseurl", "mirrorlist", "metalink"):
        value = getattr(repo, key)
        if value:
            lines.append(f"{key}={value}")
    if repo.cost is not None:
        lines.append(f"cost={repo.cost}")
    if repo.includepkgs:
        lines.append("includepkgs=" + ",".join(repo.includepkgs))
    if repo.excludepkgs:
        lines.append("excludepkgs=" + ",".join(repo.excludepkgs))
    lines += ["enabled=1", "gpgcheck=0", "repo_gpgcheck=0", "skip_if_unavailable=0"]
    return "\n".join(lines) + "\n"


def dnf_conf(packages: Packages) -> str:
    options = {
        "gpgcheck": "False",
        "repo_gpgcheck": "False",
        "localpkg_gpgcheck": "False",
        "keepcache": "True",
        "best": "True",
        "skip_if_unavailable": "False",
        "plugins": "False",
        "metadata_expire": "0",  # a repository changed under the same URL is seen at once
        "install_weak_deps": "False" if packages.exclude_weakdeps else "True",
        "cachedir": CACHEDIR,
        "color": "never",
    }
    if packages.nodocs:
        options["tsflags"] = "nodocs"
    if packages.multilib:
        options["multilib_policy"] = "all"
    if packages.excluded_names:
        options["excludepkgs"] = ",".join(packages.excluded_names)
    return "[main]\n" + "".join(f"{k}={v}\n" for k, v in options.items())


def install_specs(packages: Packages, ks: str) -> list[str]:
    """The package and group arguments of `dnf install`; BadInput for what dnf cannot do."""
    at = where(ks, packages.line)
    if packages.excluded_groups:
        raise BadInput("%packages: excluding groups (" + " ".join("-@" + g for g in packages.excluded_groups)
                       + ") is not supported for RPM images: exclude the packages by name (-name)", location=at)
    if packages.default:
        raise BadInput("%packages --default is not supported for RPM images: list the groups (@core, ...) "
                       "and packages the image needs", location=at)
    for name in [*packages.names, *packages.groups, *packages.excluded_names]:
        if not name or name.startswith("-") or any(c.isspace() for c in name):
            raise BadInput(f"%packages: {name!r} is not a package or group name", location=at)
    specs = [*packages.names, *("@" + g for g in packages.groups)]
    if not specs:
        raise BadInput("%packages lists nothing to install (add at least one package or @group)", location=at)
    return specs


def plan_install(spec: BuildSpec, *, ks: str, root: Path, confdir: Path) -> DnfPlan:
    """What to write into `confdir` and the dnf command that installs the kickstart's packages into `root`."""
    if not spec.repos:
        raise BadInput("an RPM image needs a `url` or `repo` line: dnf has no repositories of its own here",
                       location=ks)
    repo_ids: dict[str, Repo] = {}
    for repo in spec.repos:
        rid = repo_id(repo)
        if rid in repo_ids:
            raise BadInput(f"{repo_label(repo)}: same dnf repository id {rid!r} as "
                           f"{repo_label(repo_ids[rid])}", location=where(ks, repo.line))
        if not (repo.baseurl or repo.mirrorlist or repo.metalink):
            raise BadInput(f"{repo_label(repo)}: no --baseurl, --mirrorlist or --metalink",
                           location=where(ks, repo.line))
        repo_ids[rid] = repo
    specs = install_specs(spec.packages, ks)
    argv = ["dnf", "--installroot", str(root), "--releasever", spec.distribution.release,
            "--config", str(confdir / "dnf.conf"), f"--setopt=reposdir={confdir / 'repos.d'}",
            "--noplugins", "--assumeyes", "install", *specs]
    repo_file = "\n".join(repo_section(r) for r in repo_ids.values())
    return DnfPlan(argv=argv, conf=dnf_conf(spec.packages), repo_file=repo_file, repo_ids=repo_ids)


def entry_line(ks_text: str | None, header: int | None, entry: str) -> int | None:
    """The line of `entry` inside the %packages section starting at `header` (None if not found there)."""
    if not ks_text or not header:
        return None
    lines = ks_text.splitlines()
    if header > len(lines) or not lines[header - 1].lstrip().startswith("%packages"):
        return None
    for number in range(header + 1, len(lines) + 1):
        words = lines[number - 1].split("#", 1)[0].split()
        if words and words[0] == "%end":
            return None
        if words and words[0] == entry:
            return number
    return None


_NO_MATCH = re.compile(r"^No match for argument: (\S+)", re.M)
_UNABLE = re.compile(r"Unable to find a match: (.+)")
_NO_GROUP = re.compile(r"Module or Group '([^']+)' (?:is not available|does not exist)")
_REPO_FAILED = re.compile(r"Failed to (?:download|synchronize) (?:metadata )?(?:cache )?for repo '([^']+)'")
_NO_SPACE = re.compile(r"At least (\S+) more space needed|No space left on device")
_REASON = re.compile(r"^\s*- (.+)$", re.M)  # dnf lists the download errors of a repository as "  - ..."


def explain_failure(stdout: str, stderr: str, plan: DnfPlan, spec: BuildSpec, *, ks: str,
                    ks_text: str | None = None, root: Path | None = None) -> MetalstreamError:
    """One clear, located error for a failed `dnf install`."""
    output = f"{stdout}\n{stderr}"
    no_space = _NO_SPACE.search(output)
    if no_space:
        need = f": dnf needs at least {no_space.group(1)} more" if no_space.group(1) else ""
        where_root = f" {root}" if root else ""
        return OperationFailed(f"out of disk space for the build root{where_root}{need}; free some space or "
                               "build into another -o directory", details={"dnf_output": output})
    packages = spec.packages
    missing = _NO_MATCH.findall(output)
    if not missing:
        unable = _UNABLE.search(output)
        missing = unable.group(1).split() if unable else []
    groups = _NO_GROUP.findall(output)
    if missing or groups:
        wanted = [*missing, *("@" + g.lstrip("@") for g in groups)]
        line = entry_line(ks_text, packages.line, wanted[0]) or packages.line
        what = ", ".join(wanted)
        kind = "packages/groups" if missing and groups else "package" if missing else "group"
        kind += "s" if len(wanted) > 1 and not (missing and groups) else ""
        return BadInput(f"%packages: {kind} not found in the repositories: {what}", location=where(ks, line),
                        details={"dnf_output": output})
    failed_repo = _REPO_FAILED.search(output)
    if failed_repo:
        rid = failed_repo.group(1)
        repo = plan.repo_ids.get(rid)
        reasons = _REASON.findall(output)[:2]
        url = (repo.baseurl or repo.mirrorlist or repo.metalink) if repo else None
        label = repo_label(repo) if repo else f"repository {rid}"
        msg = f"{label}: cannot read the repository at {url}" if url else f"{label}: cannot read the repository"
        if reasons:
            msg += " (" + "; ".join(reasons) + ")"
        return OperationFailed(f"{where(ks, repo.line if repo else None)}: {msg}", details={"dnf_output": output})
    if "Problem" in output and ("requires" in output or "conflict" in output or "filtered out" in output):
        problem = [ln.strip() for ln in output.splitlines() if ln.strip().startswith(("Problem", "-"))][:6]
        return BadInput("%packages cannot be installed together: " + " | ".join(problem),
                        location=where(ks, packages.line), details={"dnf_output": output})
    tail = [ln for ln in output.strip().splitlines() if ln.strip()][-5:]
    return OperationFailed("dnf install failed: " + " | ".join(tail), details={"dnf_output": output})
