"""Reusing the previous build: the image cache key, and the record beside the outputs that holds it.

Builds are reproducible, so a build whose inputs are all unchanged would write the same bytes again.
The key is the sha256 of those inputs:

- the expanded kickstart text (SplitKickstart.sha256: templates rendered, `%include`s expanded);
- the distribution (family, release, arch, variant, components: flags may set them, not the text);
- the options that change the output: image name, zstd level, SOURCE_DATE_EPOCH
  (not the zstd thread count: the output is the same for any, see stages/pack.py);
- the builder: metalstream's version and a sha256 of its own source files (a code change rebuilds),
  and the versions of the build host's tools that write the image (tar, zstd, mmdebstrap/apt, dnf/rpm);
- the repositories: the backend's apt sources or dnf repo definitions, and a digest of each one's
  current metadata (Debian `dists/SUITE/InRelease`, else `Release`; RPM `repodata/repomd.xml`),
  fetched with short timeouts over http(s) or read from file://.

When any of this cannot be known (a repository unreachable, a mirrorlist/metalink, a URL scheme other
than http, https and file, a `$variable` dnf would expand) the build is not reused and says why.
The record, NAME.cache-key.json beside NAME.tar.zst and NAME.json, holds the key, the inputs it was made
from, and the sha256 of both outputs; it is reused only when both files are still there, unchanged.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import requests

import metalstream
import tarball_builder
from metalstream import proc
from metalstream.contracts.manifests import file_sha256

from .context import BuildOptions
from .spec import SplitKickstart

RECORD_FORMAT = "metalstream-build-key/1"
FETCH_TIMEOUT = (5.0, 10.0)  # connect, read (seconds)
MAX_METADATA_BYTES = 64 * 2**20
HOST_TOOLS = ("tar", "zstd", "mmdebstrap", "apt", "dpkg", "dnf", "rpm")
BUILDER_PACKAGES = (Path(metalstream.__file__).parent, Path(tarball_builder.__file__).parent)


class NotReusable(Exception):
    """An input of the key cannot be known now: the build runs."""


@dataclass(frozen=True)
class Metadata:
    """One repository's metadata file: the first of `urls` that exists is digested."""

    label: str
    urls: tuple[str, ...]


def record_path(options: BuildOptions) -> Path:
    return options.output_dir / f"{options.name}.cache-key.json"


def source_digest(packages: tuple[Path, ...] = BUILDER_PACKAGES) -> str:
    """sha256 over the builder's own source files (path and content of each, sorted; no bytecode)."""
    digest = hashlib.sha256()
    for package in packages:
        files = sorted(p for p in Path(package).rglob("*")
                       if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".pyc", ".pyo"))
        for path in files:
            digest.update(f"{package.name}/{path.relative_to(package).as_posix()}\0".encode())
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def builder_identity() -> dict:
    return {"version": metalstream.__version__, "source_sha256": source_digest(), "host_tools": host_tools()}


def host_tools() -> dict[str, str]:
    """Installed versions of the host packages whose programs write the image (Debian hosts; else empty)."""
    if shutil.which("dpkg-query") is None:
        return {}
    result = proc.run(["dpkg-query", "-W", "-f=${Package}\t${Version}\t${db:Status-Abbrev}\n", *HOST_TOOLS],
                      check=False, timeout=30)
    versions = {}
    for line in result.stdout.splitlines():
        name, version, status = (line.split("\t") + ["", ""])[:3]
        if status.startswith("ii"):
            versions[name] = version
    return versions


def metadata_digests(sources: list[Metadata]) -> dict[str, str]:
    """{label: sha256 of its metadata file}; NotReusable names the first repository that cannot be read."""
    if not sources:
        return {}
    with requests.Session() as session, ThreadPoolExecutor(max_workers=min(8, len(sources))) as pool:
        digests = list(pool.map(lambda source: _digest_first(source, session), sources))
    return dict(zip((s.label for s in sources), digests))


def _digest_first(source: Metadata, session: requests.Session) -> str:
    for url in source.urls:
        body = _fetch(url, session)
        if body is not None:
            return hashlib.sha256(body).hexdigest()
    raise NotReusable(f"{source.label}: no repository metadata at {' or '.join(source.urls)}")


def _fetch(url: str, session: requests.Session) -> bytes | None:
    """The body at url; None when it does not exist; NotReusable when it cannot be known."""
    scheme = urlsplit(url).scheme
    if scheme == "file":
        path = Path(unquote(urlsplit(url).path))
        try:
            return path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise NotReusable(f"cannot read {path}: {exc.strerror}") from exc
    if scheme not in ("http", "https"):
        raise NotReusable(f"repository URL scheme {scheme!r} is not read for the cache key: {url}")
    try:
        response = session.get(url, timeout=FETCH_TIMEOUT, stream=True)
        with response:
            if response.status_code in (404, 410):
                return None
            if response.status_code != 200:
                raise NotReusable(f"{url}: HTTP {response.status_code}")
            body = bytearray()
            for chunk in response.iter_content(1 << 16):
                body += chunk
                if len(body) > MAX_METADATA_BYTES:
                    raise NotReusable(f"{url}: larger than {MAX_METADATA_BYTES} bytes")
            return bytes(body)
    except requests.RequestException as exc:
        raise NotReusable(f"{url}: {type(exc).__name__}") from exc


def image_key(kickstart: SplitKickstart, options: BuildOptions, epoch: int, repositories: dict) -> tuple[str, dict]:
    """(key, inputs): `repositories` is the backend's answer ({"sources": text, "metadata": [Metadata]})."""
    distribution = {k: v for k, v in asdict(kickstart.build.distribution).items() if k != "line"}
    inputs = {
        "kickstart_sha256": kickstart.sha256,
        "distribution": distribution,
        "options": {"name": options.name, "image_format": options.image_format, "zstd_level": options.zstd_level,
                    "source_date_epoch": epoch},
        "builder": builder_identity(),
        "repositories": {"sources": repositories["sources"],
                         "metadata": metadata_digests(repositories["metadata"])},
    }
    key = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()
    return key, inputs


def reusable(options: BuildOptions, key: str) -> Path | None:
    """The manifest of the previous build when its record has this key and both outputs are unchanged."""
    record = _read_record(record_path(options))
    if record is None or record.get("key") != key:
        return None
    for entry in (record.get("tarball"), record.get("manifest")):
        if not isinstance(entry, dict) or not isinstance(entry.get("file"), str):
            return None
        path = options.output_dir / Path(entry["file"]).name
        if not path.is_file() or path.stat().st_size != entry.get("size") or file_sha256(path) != entry.get("sha256"):
            return None
    return options.output_dir / Path(record["manifest"]["file"]).name


def _read_record(path: Path) -> dict | None:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("format") == RECORD_FORMAT else None


def forget(options: BuildOptions) -> None:
    """Remove the record before a build replaces the outputs (a failed build leaves none behind)."""
    record_path(options).unlink(missing_ok=True)


def remember(options: BuildOptions, key: str, inputs: dict, tarball: Path, manifest: Path) -> Path:
    record = {"format": RECORD_FORMAT, "key": key, "inputs": inputs,
              "tarball": _entry(tarball), "manifest": _entry(manifest)}
    path = record_path(options)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    os.replace(partial, path)
    return path


def _entry(path: Path) -> dict:
    return {"file": path.name, "sha256": file_sha256(path), "size": path.stat().st_size}
