"""APT sources for a Debian build, as deb822 text for mmdebstrap's standard input (mirror `-`).

Pure functions: they read text and return text. Without repos in the kickstart, the build machine's
own sources are used (/etc/apt/sources.list.d/*.sources in deb822 and *.list / sources.list in the
one-line format), with their suites moved to the kickstart's release (bookworm-security → trixie-security
when the build machine runs bookworm and the kickstart asks for trixie) and, when the kickstart names
components, those components.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from metalstream.errors import BadInput

from ..spec import Distribution, Repo


@dataclass
class Source:
    types: list[str]
    uris: list[str]
    suites: list[str]
    components: list[str]
    options: dict[str, str] = field(default_factory=dict)

    def render(self) -> str:
        lines = [f"Types: {' '.join(self.types)}", f"URIs: {' '.join(self.uris)}",
                 f"Suites: {' '.join(self.suites)}"]
        if self.components:
            lines.append(f"Components: {' '.join(self.components)}")
        lines += [f"{key}: {value}" for key, value in self.options.items()]
        return "\n".join(lines) + "\n"


def parse_deb822(text: str) -> list[Source]:
    sources = []
    for paragraph in _paragraphs(text):
        if paragraph.get("enabled", "yes").lower() == "no":
            continue
        options = {k: v for k, v in paragraph.items() if k not in ("types", "uris", "suites", "components", "enabled")}
        sources.append(Source(paragraph.get("types", "deb").split(), paragraph.get("uris", "").split(),
                              paragraph.get("suites", "").split(), paragraph.get("components", "").split(),
                              {_option_name(k): v for k, v in options.items()}))
    return [s for s in sources if "deb" in s.types and s.uris and s.suites]


def _option_name(key: str) -> str:
    return "-".join(part.capitalize() for part in key.split("-"))


def _paragraphs(text: str) -> list[dict[str, str]]:
    paragraphs: list[dict[str, str]] = []
    current: dict[str, str] = {}
    key = None
    for raw in text.splitlines():
        if raw.startswith("#"):
            continue
        if not raw.strip():
            if current:
                paragraphs.append(current)
            current, key = {}, None
            continue
        if raw[0] in " \t" and key:
            current[key] += "\n" + raw.strip()
            continue
        name, _, value = raw.partition(":")
        key = name.strip().lower()
        current[key] = value.strip()
    if current:
        paragraphs.append(current)
    return paragraphs


def parse_one_line(text: str) -> list[Source]:
    sources = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line.startswith("deb "):
            continue
        words = line.split()[1:]
        options: dict[str, str] = {}
        if words and words[0].startswith("["):
            opts = []
            while words:
                word = words.pop(0)
                opts.append(word.strip("[]"))
                if word.endswith("]"):
                    break
            for opt in filter(None, opts):
                name, _, value = opt.partition("=")
                options[_option_name(name)] = value
        if len(words) >= 2:
            sources.append(Source(["deb"], [words[0]], [words[1]], words[2:], options))
    return sources


def host_sources(etc_apt: Path = Path("/etc/apt")) -> list[Source]:
    """The build machine's enabled `deb` sources."""
    sources: list[Source] = []
    main_list = etc_apt / "sources.list"
    if main_list.is_file():
        sources += parse_one_line(main_list.read_text())
    parts = etc_apt / "sources.list.d"
    if parts.is_dir():
        for path in sorted(parts.iterdir()):
            if path.suffix == ".list":
                sources += parse_one_line(path.read_text())
            elif path.suffix == ".sources":
                sources += parse_deb822(path.read_text())
    return sources


def retarget(sources: list[Source], host_codename: str, dist: Distribution) -> list[Source]:
    """Point host sources at the kickstart's release and components."""
    result = []
    for src in sources:
        suites = [dist.release + s[len(host_codename):] if host_codename and s.startswith(host_codename) else s
                  for s in src.suites]
        components = list(dist.components) or src.components
        result.append(Source(src.types, src.uris, suites, components, dict(src.options)))
    return result


def from_repos(repos: list[Repo], dist: Distribution, location: str) -> list[Source]:
    """Sources from the kickstart's own `repo`/`url` lines: each baseurl serves the kickstart's release."""
    sources = []
    for repo in repos:
        where = f"{location}:{repo.line}" if repo.line else location
        if repo.mirrorlist or repo.metalink:
            raise BadInput(f"repo {repo.name!r}: --mirrorlist/--metalink are RPM-only; give Debian repos --baseurl",
                           location=where)
        if not repo.baseurl:
            raise BadInput(f"repo {repo.name!r} has no --baseurl", location=where)
        if repo.includepkgs or repo.excludepkgs:
            raise BadInput(f"repo {repo.name!r}: --includepkgs/--excludepkgs are not supported for Debian",
                           location=where)
        sources.append(Source(["deb"], [repo.baseurl], [dist.release], list(dist.components) or ["main"]))
    return sources


def render(sources: list[Source]) -> str:
    return "\n".join(src.render() for src in sources)


def os_release_codename(path: Path = Path("/etc/os-release")) -> str:
    for line in path.read_text().splitlines() if path.is_file() else []:
        if line.startswith("VERSION_CODENAME="):
            return line.split("=", 1)[1].strip().strip('"')
    return ""
