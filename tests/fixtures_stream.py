"""Fixtures for the streaming/agent tests: a synthetic image, a faulty-on-demand HTTP file server,
a tree snapshot to compare extractions. Imported by the test modules that need them."""
from __future__ import annotations

import hashlib
import http.server
import json
import os
import re
import shutil
import socket
import stat
import subprocess
import tarfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from fixtures_images import write_image_manifest

# ---------------------------------------------------------------- synthetic image


def _populate_tree(root: Path) -> None:
    """Files with modes, owners, xattrs, ACLs, hard links, symlinks, an empty dir and ./boot/efi."""
    (root / "etc").mkdir(parents=True)
    (root / "usr/bin").mkdir(parents=True)
    (root / "boot/efi/EFI/BOOT").mkdir(parents=True)
    (root / "var/empty").mkdir(parents=True)
    (root / "home/user").mkdir(parents=True)
    (root / "etc/hostname").write_text("template\n")
    (root / "etc/shadow").write_text("root:*:19000:0:99999:7:::\n")
    os.chmod(root / "etc/shadow", 0o640)
    os.chown(root / "etc/shadow", 0, 42)
    tool = root / "usr/bin/tool"
    tool.write_bytes(b"#!/bin/sh\necho tool\n")
    os.chmod(tool, 0o4755)
    os.link(tool, root / "usr/bin/tool-hardlink")
    os.symlink("tool", root / "usr/bin/tool-symlink")
    os.symlink("/etc/hostname", root / "etc/hostname-abs")
    (root / "home/user/notes").write_text("hello\n")
    os.chown(root / "home/user/notes", 1000, 1000)
    os.chown(root / "home/user", 1000, 1000)
    os.chmod(root / "home/user", 0o700)
    os.setxattr(root / "usr/bin/tool", "user.metalstream", b"xattr-value")
    os.setxattr(root / "etc/hostname", "trusted.metalstream", b"trusted-value")
    subprocess.run(["setfacl", "-m", "u:1000:r", str(root / "etc/shadow")], check=True)
    (root / "boot/efi/EFI/BOOT/BOOTX64.EFI").write_bytes(b"MZ-not-really-an-efi-binary")
    # Looks like a systemd-networkd system to the deployer's configure step (so installs of it can finish).
    (root / "usr/lib/systemd").mkdir(parents=True)
    (root / "usr/lib/systemd/systemd-networkd").write_text("#!/bin/sh\n")
    os.chmod(root / "usr/lib/systemd/systemd-networkd", 0o755)
    # Random payload (incompressible) so the compressed image spans many chunks.
    rng = hashlib.sha256(b"metalstream")
    with open(root / "usr/payload.bin", "wb") as f:
        for i in range(3 * 1024 * 1024 // 32):
            rng.update(i.to_bytes(4, "little"))
            f.write(rng.digest())
    for i in range(40):
        (root / "etc" / f"conf-{i:02d}").write_text(f"setting {i}\n" * (i + 1))


def _zstd(data: bytes) -> bytes:
    return subprocess.run(["zstd", "-q", "-3", "-c"], input=data, capture_output=True, check=True).stdout


@dataclass
class SyntheticImage:
    root: Path  # the source tree
    tar: Path  # uncompressed tar
    path: Path  # NAME.tar.zst: several zstd frames; frame boundaries at the `splits` offsets
    sha256: str
    size: int
    header_cuts: list[int]  # compressed offsets at which tar has received half of a member header
    members: list[tarfile.TarInfo]

    def variant(self, directory: Path, name: str, data: bytes) -> Path:
        path = directory / name
        path.write_bytes(data)
        return path


def build_synthetic_image(work: Path) -> SyntheticImage:
    root = work / "tree"
    _populate_tree(root)
    tar_path = work / "image.tar"
    subprocess.run(["tar", "--sort=name", "--numeric-owner", "--xattrs", "--xattrs-include=*", "--acls",
                    "--format=posix", "-C", str(root), "-cf", str(tar_path), "."], check=True)
    with tarfile.open(tar_path) as tf:
        members = tf.getmembers()
    data = tar_path.read_bytes()
    # Split the tar stream in the middle of a few member headers and compress each piece as its own
    # zstd frame (zstd decompresses concatenated frames as one stream): a connection cut exactly at a
    # frame boundary then leaves tar holding half a header.
    split_points = sorted({m.offset + 256 for m in members[3::9]})
    pieces, previous = [], 0
    for point in [*split_points, len(data)]:
        pieces.append(data[previous:point])
        previous = point
    frames = [_zstd(piece) for piece in pieces]
    header_cuts, position = [], 0
    for frame in frames[:-1]:
        position += len(frame)
        header_cuts.append(position)
    image = b"".join(frames)
    path = work / "image.tar.zst"
    path.write_bytes(image)
    return SyntheticImage(root=root, tar=tar_path, path=path, sha256=hashlib.sha256(image).hexdigest(),
                          size=len(image), header_cuts=header_cuts, members=members)


@pytest.fixture(scope="session")
def stream_test_image(tmp_path_factory) -> SyntheticImage:
    """A small rootfs image (tar.zst, ~3 MiB) with every kind of tar member the deployer must keep."""
    if os.geteuid() != 0:
        pytest.skip("building the synthetic image sets file owners: needs root")
    for tool in ("tar", "zstd", "setfacl"):
        if shutil.which(tool) is None:
            pytest.fail(f"missing tool {tool}: run `bash .ci/setup`")
    return build_synthetic_image(tmp_path_factory.mktemp("synthetic-image"))


@pytest.fixture(scope="session")
def stream_test_image_manifest(stream_test_image, tmp_path_factory):
    """A manifest in the contract format for the streaming test image (not bootable: no kernel)."""
    work = tmp_path_factory.mktemp("stream-manifest")
    (work / stream_test_image.path.name).symlink_to(stream_test_image.path)
    manifest = write_image_manifest(work / stream_test_image.path.name, "stream-test", uncompressed_size=4 << 20,
                                    file_count=60, family="synthetic")
    return manifest, stream_test_image.path


# ---------------------------------------------------------------- comparing trees


def tree_snapshot(root: Path) -> dict[str, tuple]:
    """Everything about a tree that an extraction must reproduce (mtime of dirs aside)."""
    snapshot: dict[str, tuple] = {}
    first_path_of_inode: dict[int, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            st = os.lstat(path)
            xattrs = {}
            for key in os.listxattr(path, follow_symlinks=False):
                xattrs[key] = os.getxattr(path, key, follow_symlinks=False)
            if stat.S_ISREG(st.st_mode):
                content = hashlib.sha256(path.read_bytes()).hexdigest()
                link_group = first_path_of_inode.setdefault(st.st_ino, rel) if st.st_nlink > 1 else None
                mtime = int(st.st_mtime)
            elif stat.S_ISLNK(st.st_mode):
                content, link_group, mtime = os.readlink(path), None, int(st.st_mtime)
            else:
                content, link_group, mtime = None, None, None
            snapshot[rel] = (st.st_mode, st.st_uid, st.st_gid, content, link_group, mtime,
                             tuple(sorted(xattrs.items())))
    return snapshot


# ---------------------------------------------------------------- a file server that misbehaves on request


@dataclass
class Resource:
    path: Path
    etag: str | None
    last_modified: str | None = "Wed, 25 Nov 2026 10:00:00 GMT"


@dataclass
class Fault:
    at: int  # absolute byte offset in the object where the fault strikes
    kind: str = "cut"  # cut: close the connection; stall: stop sending; replace: swap the object, then cut
    replacement: Path | None = None
    stall_seconds: float = 0.0


@dataclass
class ServerState:
    resources: dict[str, Resource] = field(default_factory=dict)
    faults: dict[str, list[Fault]] = field(default_factory=dict)  # each fault fires once
    requests: list[dict] = field(default_factory=list)
    honour_range: bool = True
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "_Server"

    def log_message(self, format, *args):  # keep test output clean
        pass

    def do_GET(self):
        state = self.server.state
        name = self.path.lstrip("/")
        with state.lock:
            state.requests.append({"path": self.path, "range": self.headers.get("Range"),
                                   "if_range": self.headers.get("If-Range")})
            resource = state.resources.get(name)
        if resource is None:
            self.send_error(404)
            return
        size = resource.path.stat().st_size
        start, status = 0, 200
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
        if match and state.honour_range:
            if_range = self.headers.get("If-Range")
            validators = {v for v in (resource.etag, resource.last_modified) if v}
            if if_range is None or if_range in validators:
                start, status = int(match.group(1)), 206
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(size - start))
        self.send_header("Accept-Ranges", "bytes")
        if resource.etag:
            self.send_header("ETag", resource.etag)
        if resource.last_modified:
            self.send_header("Last-Modified", resource.last_modified)
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
        self.end_headers()
        with state.lock:
            pending = [f for f in state.faults.get(name, []) if f.at >= start]
            fault = min(pending, key=lambda f: f.at) if pending else None
            if fault:
                state.faults[name].remove(fault)
        stop = fault.at if fault else size
        with open(resource.path, "rb") as f:
            f.seek(start)
            position = start
            while position < stop:
                block = f.read(min(256 * 1024, stop - position))
                if not block:
                    break
                try:
                    self.wfile.write(block)
                except (BrokenPipeError, ConnectionResetError):
                    return
                position += len(block)
        if fault is None:
            return
        self.wfile.flush()
        if fault.kind == "stall":
            time.sleep(fault.stall_seconds)
        elif fault.kind == "replace":
            with state.lock:
                state.resources[name] = Resource(fault.replacement, etag='"replaced-' + str(time.time()) + '"',
                                                 last_modified="Thu, 26 Nov 2026 10:00:00 GMT")
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    state: ServerState


class FileServer:
    """A real HTTP/1.1 server on loopback serving files with Range, ETag, If-Range and injected faults."""

    def __init__(self):
        self.state = ServerState()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.state = self.state
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> FileServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def serve(self, name: str, path: Path, *, etag: str | None = None,
              last_modified: str | None = "Wed, 25 Nov 2026 10:00:00 GMT") -> str:
        if etag is None:
            etag = '"' + hashlib.sha256(path.read_bytes()[:1 << 20]).hexdigest()[:16] + f'-{path.stat().st_size}"'
        self.state.resources[name] = Resource(path, etag or None, last_modified)
        return f"{self.base_url}/{name}"

    def fault(self, name: str, fault: Fault) -> None:
        self.state.faults.setdefault(name, []).append(fault)

    def ranged_requests(self) -> list[dict]:
        return [r for r in self.state.requests if r["range"]]


@pytest.fixture
def file_server():
    server = FileServer().start()
    try:
        yield server
    finally:
        server.stop()


# ---------------------------------------------------------------- a fake of the service's three agent endpoints


@dataclass
class FakeServiceState:
    token: str
    plan: dict | None = None
    events: list[dict] = field(default_factory=list)
    results: list[dict] = field(default_factory=list)
    auth_seen: list[str | None] = field(default_factory=list)
    fail_plan: int = 0  # answer this many plan requests with 503 first
    fail_events: int = 0  # answer this many event posts with 503
    fail_results: int = 0  # answer this many result posts with 503
    plan_requests: int = 0


class _ServiceHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "_ServiceServer"

    def log_message(self, format, *args):
        pass

    def _reply(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _authorized(self) -> bool:
        state = self.server.state
        header = self.headers.get("Authorization")
        state.auth_seen.append(header)
        if header != f"Bearer {state.token}":
            self._reply(401, {"error": "invalid agent token"})
            return False
        return True

    def do_GET(self):
        state = self.server.state
        if self.path != "/api/v1/agent/plan":
            self._reply(404, {"error": "not found"})
            return
        if not self._authorized():
            return
        state.plan_requests += 1
        if state.fail_plan > 0:
            state.fail_plan -= 1
            self._reply(503, {"error": "starting up"})
            return
        self._reply(200, state.plan)

    def do_POST(self):
        state = self.server.state
        length = int(self.headers.get("Content-Length", 0))
        body = json.loads(self.rfile.read(length) or b"null")
        if not self._authorized():
            return
        if self.path == "/api/v1/agent/events":
            if state.fail_events > 0:
                state.fail_events -= 1
                self._reply(503, {"error": "busy"})
                return
            state.events.append(body)
        elif self.path == "/api/v1/agent/result":
            if state.fail_results > 0:
                state.fail_results -= 1
                self._reply(503, {"error": "busy"})
                return
            state.results.append(body)
        else:
            self._reply(404, {"error": "not found"})
            return
        self._reply(200, {"ok": True})


class _ServiceServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    state: FakeServiceState


class FakeService:
    """The agent's side of the service contract (docs/contracts.md §2–3), recording what the agent sent."""

    def __init__(self, token: str = "agent-token-123"):
        self.state = FakeServiceState(token=token)
        self._server = _ServiceServer(("127.0.0.1", 0), _ServiceHandler)
        self._server.state = self.state
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


@pytest.fixture
def fake_service():
    service = FakeService()
    try:
        yield service
    finally:
        service.stop()


# ---------------------------------------------------------------- a real sshd on loopback (the "rescue system")


@dataclass
class LocalSshd:
    host: str
    port: int
    user: str
    key: Path  # the client's private key (root may log in with it)
    known_hosts: Path  # holds the server's host key
    other_key: Path  # a key sshd does not accept


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def local_sshd(tmp_path):
    """OpenSSH's sshd with its own config and host key on a loopback port, root login by key only."""
    if os.geteuid() != 0:
        pytest.skip("sshd must run as root to log in as root")
    sshd = shutil.which("sshd") or "/usr/sbin/sshd"
    if not os.path.exists(sshd) or shutil.which("ssh-keygen") is None:
        pytest.fail("openssh-server is missing: run `bash .ci/setup`")
    work = tmp_path / "sshd"
    work.mkdir()
    for name in ("host_key", "client_key", "other_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(work / name)],
                       check=True)
    (work / "authorized_keys").write_text((work / "client_key.pub").read_text())
    port = _free_port()
    (work / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {work / 'host_key'}\nPidFile {work / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {work / 'authorized_keys'}\nPermitRootLogin prohibit-password\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
        "Subsystem sftp internal-sftp\n")
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # privilege separation dir, normally made at boot
    server = subprocess.Popen([sshd, "-D", "-e", "-f", str(work / "sshd_config")],
                              stdout=subprocess.DEVNULL, stderr=open(work / "sshd.log", "wb"))
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"sshd did not start: {(work / 'sshd.log').read_text()}")
                time.sleep(0.1)
        host_key = (work / "host_key.pub").read_text().split()
        (work / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_key[0]} {host_key[1]}\n")
        yield LocalSshd("127.0.0.1", port, "root", work / "client_key", work / "known_hosts", work / "other_key")
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
