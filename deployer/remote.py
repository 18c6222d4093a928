"""`metalstream install ... --ssh root@host`: run the same install on a machine booted into a rescue system.

The agent (the core and deployer packages) is zipped on the fly into one `deployer.pyz` (a zipapp:
stdlib + click + requests + pyudev on the far side, nothing else), copied with SFTP into a fresh temp dir on the host, and run there
as `python3 deployer.pyz install ...`. Its stdout/stderr stream back as they come; its exit status
becomes ours. Local image manifests (and the tarball beside them) and plan files are uploaded too;
http(s) URLs are passed through so the host streams the image itself. Ctrl-C interrupts the remote
install (SIGINT to the remote process by its pid) and the temp dir is always removed.

Host keys: with `known_hosts`, an unknown or changed key is refused. Without it the user's
~/.ssh/known_hosts is consulted and a host not in it is accepted on first use with its fingerprint
logged (rescue systems usually generate fresh host keys at every boot).
"""
from __future__ import annotations

import codecs
import io
import json
import logging
import os
import re
import shlex
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence, TextIO
from urllib.parse import unquote, urlparse

import click

from metalstream.agent_sources import agent_sources
from metalstream.errors import BadInput, OperationFailed

log = logging.getLogger("metalstream.remote")

ZIP_MAIN = "from metalstream.cli import main\n\nmain()\n"
_TARGET = re.compile(r"(?:(?P<user>[^@:\s]+)@)?(?P<host>\[[0-9A-Fa-f:.]+\]|[^@:\s\[\]]+)(?::(?P<port>\d{1,5}))?")


@dataclass(frozen=True)
class SshTarget:
    user: str
    host: str
    port: int = 22


def parse_ssh_target(text: str, *, location: str = "--ssh") -> SshTarget:
    """`user@host[:port]` (user defaults to root; IPv6 as [addr]) or BadInput naming `location`."""
    match = _TARGET.fullmatch(text.strip())
    if not match:
        raise BadInput(f"{text!r} is not USER@HOST[:PORT]", location=location)
    port = int(match.group("port") or 22)
    if not 0 < port < 65536:
        raise BadInput(f"port {port} out of range", location=location)
    return SshTarget(match.group("user") or "root", match.group("host").strip("[]"), port)


def build_zipapp(dest: Path) -> Path:
    """Zip the agent's sources into a runnable `deployer.pyz` (reproducible: fixed timestamps, sorted)."""
    path = Path(dest) / "deployer.pyz"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        entry = zipfile.ZipInfo("__main__.py", date_time=(1980, 1, 1, 0, 0, 0))
        zf.writestr(entry, ZIP_MAIN)
        for name, source in agent_sources():
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, source.read_bytes())
    return path


def _local_path(source: str) -> Path | None:
    parsed = urlparse(source)
    if parsed.scheme in ("http", "https"):
        return None
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    return Path(source)


class _Session:
    """One SSH connection: run commands, upload files, stream a command's output."""

    def __init__(self, target: SshTarget, key: str | None, known_hosts: str | None, connect_timeout: float):
        import paramiko  # only needed here; the installer environment never imports this module

        self.paramiko = paramiko
        self.client = paramiko.SSHClient()
        if known_hosts:
            self.client.load_host_keys(known_hosts)
            self.client.set_missing_host_key_policy(paramiko.RejectPolicy())
        else:
            self.client.load_system_host_keys()
            self.client.set_missing_host_key_policy(_TrustOnFirstUse())
        where = f"{target.user}@{target.host}:{target.port}"
        try:
            self.client.connect(target.host, port=target.port, username=target.user, key_filename=key,
                                look_for_keys=key is None, allow_agent=key is None, timeout=connect_timeout,
                                banner_timeout=connect_timeout, auth_timeout=connect_timeout)
        except paramiko.AuthenticationException as exc:
            raise OperationFailed(f"ssh {where}: authentication failed ({exc})") from exc
        except paramiko.BadHostKeyException as exc:
            raise OperationFailed(f"ssh {where}: host key mismatch: {exc}") from exc
        except paramiko.SSHException as exc:
            raise OperationFailed(f"ssh {where}: {exc}") from exc
        except OSError as exc:
            raise OperationFailed(f"ssh {where}: cannot connect: {exc.strerror or exc}") from exc
        self.sftp = self.client.open_sftp()

    def check_output(self, command: str, timeout: float = 60) -> str:
        _, stdout, stderr = self.client.exec_command(command, timeout=timeout)
        output = stdout.read().decode(errors="replace")
        status = stdout.channel.recv_exit_status()
        if status != 0:
            raise OperationFailed(f"remote command {command!r} failed ({status}): "
                                  f"{stderr.read().decode(errors='replace').strip()}")
        return output

    def upload(self, local: Path, remote: str, progress: Callable[[str], None]) -> None:
        size = local.stat().st_size
        last = [0.0]

        def callback(done: int, total: int) -> None:
            now = time.monotonic()
            if now - last[0] >= 2 or done == total:
                last[0] = now
                progress(f"uploading {local.name}: {done >> 20}/{total >> 20} MiB")

        self.sftp.put(str(local), remote, callback=callback if size > (8 << 20) else None)

    def stream(self, command: str, out: TextIO, err: TextIO) -> int:
        channel = self.client.get_transport().open_session()
        channel.exec_command(command)
        decoders = (codecs.getincrementaldecoder("utf-8")("replace"),
                    codecs.getincrementaldecoder("utf-8")("replace"))
        while True:
            moved = False
            if channel.recv_ready():
                out.write(decoders[0].decode(channel.recv(65536)))
                out.flush()
                moved = True
            if channel.recv_stderr_ready():
                err.write(decoders[1].decode(channel.recv_stderr(65536)))
                err.flush()
                moved = True
            if not moved:
                if channel.exit_status_ready() and not channel.recv_ready() and not channel.recv_stderr_ready():
                    break
                time.sleep(0.05)
        status = channel.recv_exit_status()
        channel.close()
        if status < 0:
            raise OperationFailed("the SSH connection closed before the remote install reported its exit status")
        return status

    def close(self) -> None:
        self.sftp.close()
        self.client.close()


class _TrustOnFirstUse:
    """Accept a host not in known_hosts, logging its key fingerprint (see the module doc)."""

    def missing_host_key(self, client, hostname, key) -> None:
        log.warning("ssh: accepting new host key for %s (%s %s)", hostname, key.get_name(),
                    key.fingerprint if hasattr(key, "fingerprint") else key.get_fingerprint().hex())
        client.get_host_keys().add(hostname, key.get_name(), key)


def _upload_image(session: _Session, image_source: str, remote_dir: str, note: Callable[[str], None]) -> str:
    """Upload a local manifest and its tarball; return what the remote install should be given."""
    manifest = _local_path(image_source)
    if manifest is None:
        return image_source
    try:
        tarball = json.loads(manifest.read_text()).get("tarball")
    except (OSError, ValueError) as exc:
        raise BadInput(f"cannot read image manifest: {exc}", location=str(manifest)) from None
    if not isinstance(tarball, str) or "/" in tarball:
        raise BadInput("tarball: must be a file name beside the manifest", location=str(manifest))
    session.upload(manifest, f"{remote_dir}/{manifest.name}", note)
    session.upload(manifest.parent / tarball, f"{remote_dir}/{tarball}", note)
    return f"{remote_dir}/{manifest.name}"


def _upload_plan(session: _Session, plan: str, remote_dir: str, note: Callable[[str], None]) -> str:
    """Upload the plan; a local image it names is uploaded too and the copy points at it."""
    path = Path(plan)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise BadInput(f"cannot read plan: {exc}", location=str(path)) from None
    image = data.get("image") if isinstance(data, dict) else None
    url = image.get("url") if isinstance(image, dict) else None
    if isinstance(url, str) and (local := _local_path(url)) is not None:
        session.upload(local, f"{remote_dir}/{local.name}", note)
        image["url"] = f"{remote_dir}/{local.name}"
    session.sftp.putfo(io.BytesIO(json.dumps(data).encode()), f"{remote_dir}/plan.json")
    return f"{remote_dir}/plan.json"


def install_over_ssh(host: str, user: str, port: int, key: str | None, image_source: str | None, disk: str,
                     plan: str | None, *, install_args: Sequence[str] = (), python: str = "python3",
                     known_hosts: str | None = None, connect_timeout: float = 30.0, ca: Path | None = None,
                     passphrase: str | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run `metalstream install IMAGE --to DISK [--plan PLAN] [--ca CA] INSTALL_ARGS` on the host; return its
    exit code. A pinned CA is uploaded, so the host checks https sources with it; a LUKS `passphrase` goes into a
    file in the private temp dir (never into the remote command line) and is removed with it."""
    import tempfile

    out = out or sys.stdout
    err = err or sys.stderr

    def note(message: str) -> None:
        err.write(f"ssh {user}@{host}: {message}\n")
        err.flush()

    if image_source is None and plan is None:
        raise BadInput("give an image manifest or a plan to install over SSH", location="IMAGE")
    session = _Session(SshTarget(user, host, port), key, known_hosts, connect_timeout)
    remote_dir = None
    try:
        remote_dir = session.check_output("mktemp -d /tmp/metalstream-remote.XXXXXX").strip()
        with tempfile.TemporaryDirectory(prefix="metalstream-pyz-") as tmp:
            session.upload(build_zipapp(Path(tmp)), f"{remote_dir}/deployer.pyz", note)
        argv = ["install"]
        if image_source is not None:
            argv.append(_upload_image(session, image_source, remote_dir, note))
        argv += ["--to", disk]
        if plan is not None:
            argv += ["--plan", _upload_plan(session, plan, remote_dir, note)]
        if ca is not None:
            session.upload(Path(ca), f"{remote_dir}/ca.pem", note)
            argv += ["--ca", f"{remote_dir}/ca.pem"]
        if passphrase is not None:
            session.sftp.putfo(io.BytesIO(passphrase.encode() + b"\n"), f"{remote_dir}/passphrase")
            argv += ["--encryption-passphrase-file", f"{remote_dir}/passphrase"]
        argv += list(install_args)
        command = (f"cd {shlex.quote(remote_dir)} && echo $$ > pid && exec {shlex.quote(python)} deployer.pyz "
                   + shlex.join(argv))
        note(f"running {python} deployer.pyz {shlex.join(argv)}")
        try:
            return session.stream(command, out, err)
        except KeyboardInterrupt:
            note("interrupted: stopping the remote install")
            session.check_output(f"kill -INT $(cat {shlex.quote(remote_dir)}/pid) 2>/dev/null; sleep 2; true")
            raise
    finally:
        if remote_dir:
            try:
                session.check_output(f"rm -rf {shlex.quote(remote_dir)}")
            except Exception as exc:  # cleanup must not mask the real outcome
                log.warning("could not remove %s on %s: %s", remote_dir, host, exc)
        session.close()


def ssh_options(command: Callable) -> Callable:
    """Click options for `install`: --ssh USER@HOST[:PORT], --ssh-identity KEYFILE, --ssh-known-hosts FILE."""
    command = click.option("--ssh-known-hosts", metavar="FILE",
                           help="Only accept the host key listed in this known_hosts file.")(command)
    command = click.option("--ssh-identity", metavar="KEYFILE",
                           help="Private key for --ssh (default: your ssh agent / ~/.ssh keys).")(command)
    command = click.option("--ssh", "ssh_target", metavar="USER@HOST[:PORT]",
                           help="Install on that machine (e.g. booted into a rescue system) instead of here: "
                                "the deployer is copied over SSH and run there.")(command)
    return command


def run_ssh_install(ssh_target: str, identity: str | None, known_hosts: str | None, image: str | None,
                    disk: str, plan: str | None, install_args: Sequence[str], *, python: str = "python3",
                    ca: Path | None = None, passphrase: str | None = None) -> int:
    """What `install --ssh` does with its options; `install_args` are the other install options to forward,
    `ca` the pinned CA and `passphrase` the LUKS passphrase (both uploaded)."""
    target = parse_ssh_target(ssh_target)
    if identity and not os.path.isfile(identity):
        raise BadInput(f"no such key file {identity}", location="--ssh-identity")
    if known_hosts and not os.path.isfile(known_hosts):
        raise BadInput(f"no such file {known_hosts}", location="--ssh-known-hosts")
    return install_over_ssh(target.host, target.user, target.port, identity, image, disk, plan,
                            install_args=install_args, known_hosts=known_hosts, python=python, ca=ca,
                            passphrase=passphrase)
