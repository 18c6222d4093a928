"""A throw-away PostgreSQL cluster for the tests: Debian's server binaries, a temporary directory,
a Unix socket only (no TCP listener at all), trust authentication, durability off (it is deleted at
the end anyway). PostgreSQL refuses to run as root: as root the cluster belongs to the `postgres`
system user (the Debian package creates it), its directory is private to that user, and root still
connects through the socket. The server is a child of the test process that the kernel stops when
that process dies, however it dies (so a killed test run leaves no server behind).

    cluster = PgCluster.start()
    url = cluster.create_database("t1")        # postgresql+psycopg://postgres@/t1?host=SOCKET_DIR&port=PORT
    ...
    cluster.stop()                             # stops the server, removes the directory
"""
from __future__ import annotations

import glob
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from metalstream import proc
from metalstream.errors import CommandError

SUPERUSER = "postgres"
SETUP_HINT = "run `bash .ci/setup` (it installs Debian's postgresql package)"
# Fast and throw-away: nothing here has to survive a crash of the machine.
SERVER_SETTINGS = {"listen_addresses": "", "fsync": "off", "synchronous_commit": "off", "full_page_writes": "off",
                   "max_connections": "300", "shared_buffers": "64MB", "log_min_messages": "warning"}


class PgClusterError(RuntimeError):
    pass


def find_bindir() -> Path:
    """The newest /usr/lib/postgresql/N/bin with initdb, pg_ctl and postgres; PgClusterError if none."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(re.sub(r"\D", "", p) or 0))
    for initdb in reversed(found):
        bindir = Path(initdb).parent
        if all(os.access(bindir / tool, os.X_OK) for tool in ("initdb", "pg_ctl", "postgres")):
            return bindir
    raise PgClusterError(f"PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin/initdb): {SETUP_HINT}")


class PgCluster:
    def __init__(self, root: Path, bindir: Path, port: int, run_as: str | None):
        self.root = root
        self.bindir = bindir
        self.port = port
        self.run_as = run_as
        self.data = root / "data"
        self.socket_dir = root / "socket"
        self.log = root / "server.log"
        self.process: subprocess.Popen | None = None
        self._counter = 0

    @classmethod
    def start(cls, *, port: int = 5432, timeout: float = 60) -> "PgCluster":
        """initdb + start in a new temporary directory. The port only names the socket file (no TCP)."""
        bindir = find_bindir()
        run_as = None
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                raise PgClusterError(f"no `postgres` system user to run PostgreSQL as (it refuses root): "
                                     f"{SETUP_HINT}") from None
            run_as = "postgres"
        root = Path(tempfile.mkdtemp(prefix="metalstream-pg-"))
        cluster = cls(root, bindir, port, run_as)
        try:
            cluster.socket_dir.mkdir()
            if run_as:
                for path in (root, cluster.socket_dir):
                    shutil.chown(path, run_as, run_as)
            cluster._run(["initdb", "-D", cluster.data, "-U", SUPERUSER, "--auth=trust", "--encoding=UTF8",
                          "--locale=C.UTF-8", "--no-sync"], timeout=timeout)
            cluster._start_server(timeout)
        except BaseException:
            cluster.stop()
            raise
        return cluster

    def _start_server(self, timeout: float) -> None:
        argv = [self.bindir / "postgres", "-D", self.data, "-k", self.socket_dir, "-p", str(self.port)]
        for name, value in SERVER_SETTINGS.items():
            argv += ["-c", f"{name}={value}"]
        with open(self.log, "ab") as log:  # new session: Ctrl-C reaches pytest, which stops the server
            self.process = proc.spawn(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=self.root,
                                      user=self.run_as, die_with_parent=True, death_signal=signal.SIGQUIT,
                                      new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.connect().close()
                return
            except Exception as exc:  # psycopg.OperationalError until the socket answers
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise PgClusterError(f"PostgreSQL did not start ({exc}): "
                                         f"{self.log.read_text(errors='replace')[-2000:]}") from None
                time.sleep(0.05)

    def _run(self, argv: list, timeout: float) -> None:
        argv = [self.bindir / argv[0], *argv[1:]]
        try:
            proc.run(argv, timeout=timeout, user=self.run_as, cwd=self.root)
        except CommandError as exc:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise PgClusterError(f"{exc}\n{log}") from None

    def url(self, dbname: str, driver: str = "postgresql+psycopg") -> str:
        """SQLAlchemy URL of database `dbname` (through the socket directory)."""
        return f"{driver}://{SUPERUSER}@/{dbname}?host={self.socket_dir}&port={self.port}"

    def connect(self, dbname: str = "postgres"):
        """An autocommit psycopg connection (CREATE/DROP DATABASE cannot run in a transaction)."""
        import psycopg
        return psycopg.connect(host=str(self.socket_dir), port=self.port, user=SUPERUSER, dbname=dbname,
                               autocommit=True)

    def create_database(self, name: str | None = None, *, template: str = "template0") -> str:
        """A new empty database (a copy of `template`); returns its SQLAlchemy URL."""
        if name is None:
            self._counter += 1
            name = f"test_{os.getpid()}_{self._counter}"
        with self.connect() as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        return self.url(name)

    def drop_database(self, name_or_url: str) -> None:
        name = name_or_url.partition("?")[0].rpartition("/")[2] if "://" in name_or_url else name_or_url
        with self.connect() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        """Stop the server (fast shutdown: sessions are ended) and remove its directory."""
        try:
            if self.process is not None and self.process.poll() is None:
                self.process.send_signal(signal.SIGINT)
                try:
                    self.process.wait(30)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
