"""pytest fixtures for the pxe tests (imported by conftest.py).

The service's tests run on both databases: `pxe_env` (and every test using it) once on SQLite and
once on PostgreSQL (ids `test_x[sqlite]`, `test_x[postgresql]`); `pxe_server` on SQLite for every
test and on PostgreSQL too for the tests in SERVER_TESTS_ON_EVERY_DATABASE. PostgreSQL is a
throw-away cluster (lab/pg.py) started once per session when the first test needs it;
without Debian's postgresql package those tests fail and say to run `bash .ci/setup`.
"""
from __future__ import annotations

import os
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from metalstream.contracts.manifests import file_entry, installer_manifest, write_document

from conftest import METALSTREAM
from fixtures_images import make_image, write_image_manifest

PXE_MAC = "52:54:00:12:34:56"
DATABASES = ("sqlite", "postgresql")
# The real-server tests whose point is what the database does under concurrency: run on both.
SERVER_TESTS_ON_EVERY_DATABASE = {
    "test_100_concurrent_identical_posts_make_one_deployment",
    "test_concurrent_posts_without_key_never_make_two_open_deployments_for_one_mac",
    "test_boot_flow_and_metrics_through_the_real_server",
}


@pytest.fixture(scope="session")
def pg_cluster():
    """The session's throw-away PostgreSQL cluster (lab/pg.py); fails when it cannot start."""
    from lab.pg import PgCluster, PgClusterError
    try:
        cluster, problem = PgCluster.start(), None
    except PgClusterError as exc:
        cluster, problem = None, str(exc)
    if problem:
        pytest.fail(problem, pytrace=False)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def pg_template(pg_cluster) -> str:
    """A database at the newest schema revision that per-test databases are copied from (fast)."""
    from pxe import db
    name = "metalstream_template"
    db.make_engine(pg_cluster.create_database(name)).dispose()
    return name


@pytest.fixture
def pg_database(pg_cluster):
    """Make empty PostgreSQL databases for one test: `pg_database()` → URL; dropped afterwards."""
    made = []

    def make(template: str = "template0") -> str:
        url = pg_cluster.create_database(template=template)
        made.append(url)
        return url
    yield make
    for url in made:
        pg_cluster.drop_database(url)


@pytest.fixture(params=DATABASES)
def pxe_db_url(request) -> str | None:
    """The database URL a test's service uses: None (the default SQLite file) or a fresh PostgreSQL
    database already at the newest schema revision."""
    if request.param == "sqlite":
        return None
    request.getfixturevalue("pg_template")
    return request.getfixturevalue("pg_database")(template="metalstream_template")


def pxe_write_image(directory: Path, name: str, tarball: Path | None = None) -> Path:
    """A real tar.zst of a tiny tree (or the given file, served as is) with its manifest; returns the manifest path."""
    if tarball is not None:
        return write_image_manifest(tarball, name, family="debian", release="bookworm")
    tree = directory / f"{name}-tree"
    (tree / "etc").mkdir(parents=True, exist_ok=True)
    (tree / "etc" / "hostname").write_text("localhost\n")
    (tree / "etc" / "os-release").write_text(f"ID=test\nNAME={name}\n")
    return make_image(tree, directory, name, family="debian", release="bookworm")


@pytest.fixture(scope="session")
def pxe_installer(tmp_path_factory) -> Path:
    """A fake installer environment: small kernel/initramfs files and their metalstream-installer/1 manifest."""
    directory = tmp_path_factory.mktemp("installer")
    (directory / "vmlinuz").write_bytes(b"fake kernel\n" * 100)
    (directory / "initrd.img").write_bytes(os.urandom(300_000))
    manifest = installer_manifest(
        name="installer", kernel=file_entry(directory / "vmlinuz"), initramfs=file_entry(directory / "initrd.img"),
        kernel_version="6.1.0-test", created=1700000000, kickstart_sha256="0" * 64,
        initramfs_uncompressed_size=300_000, file_count=2, module_count=0, agent_sha256="0" * 64)
    return write_document(directory / "installer.json", manifest)


@pytest.fixture(scope="session")
def pxe_image_manifest(tmp_path_factory) -> Path:
    return pxe_write_image(tmp_path_factory.mktemp("image"), "tiny")


@dataclass
class PxeEnv:
    app: object
    client: object
    service: object
    admin: dict
    read: dict
    image_manifest: Path

    def post_deployment(self, body: dict, **headers):
        return self.client.post("/api/v1/deployments", json=body, headers={**self.admin, **headers})

    def pending(self, mac: str = PXE_MAC, **extra) -> dict:
        response = self.post_deployment({"mac": mac, "image": "tiny", **extra})
        assert response.status_code == 201, response.get_json()
        return response.get_json()

    def boot_token(self, mac: str = PXE_MAC) -> str:
        script = self.client.get(f"/boot/{mac}.ipxe").get_data(as_text=True)
        return script.split("metalstream.token=")[1].split()[0]


@pytest.fixture
def pxe_env(tmp_path, pxe_installer, pxe_image_manifest, pxe_db_url) -> PxeEnv:
    """A fresh service (own data dir and database: SQLite, then PostgreSQL) behind Flask's test client,
    with image `tiny` registered."""
    from pxe import imagestore, tokens
    from pxe.app import create_app
    from pxe.config import ServiceConfig

    config = ServiceConfig(data_dir=tmp_path / "data", installer=pxe_installer, supervisor_interval=0,
                           public_url="http://10.0.2.2:8080", image_import_dirs=(tmp_path,), db_url=pxe_db_url)
    app = create_app(config)
    service = app.extensions["metalstream"]
    imagestore.register(service.engine, config.image_dir, pxe_image_manifest)
    admin = {"Authorization": "Bearer " + tokens.create_api_token(service.engine, "admin")}
    read = {"Authorization": "Bearer " + tokens.create_api_token(service.engine, "read")}
    yield PxeEnv(app, app.test_client(), service, admin, read, pxe_image_manifest)
    service.engine.dispose()


@dataclass
class PxeServer:
    service: object  # lab.service_proc.ServiceProcess
    admin: dict
    big_image: str
    big_size: int
    small_image: str
    tftp_port: int
    database: str = "sqlite"
    db_url: str | None = None  # None: the SQLite file in the data directory

    @property
    def url(self) -> str:
        return self.service.url

    @property
    def data_dir(self) -> Path:
        return self.service.data_dir

    @property
    def log_path(self) -> Path:
        return self.service.log_path

    def rss_kib(self) -> int:
        total = 0
        for pid in self.service.pids():
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        return total


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def db_options(db_url: str | None) -> list[str]:
    return ["--db", db_url] if db_url else []


def cli_admin_token(data_dir: Path, db_url: str | None = None) -> dict:
    """An admin token made with the local `metalstream token create`, as Authorization headers."""
    token = subprocess.run([*METALSTREAM, "token", "create", "--data-dir", data_dir, *db_options(db_url),
                            "--scope", "admin"], check=True, capture_output=True, text=True).stdout.strip()
    return {"Authorization": f"Bearer {token}"}


def pytest_generate_tests(metafunc) -> None:
    """`pxe_server` runs on SQLite, and on PostgreSQL too for the tests in SERVER_TESTS_ON_EVERY_DATABASE
    (one server per database for the whole session: pytest groups the tests by it)."""
    if "pxe_server" in metafunc.fixturenames:
        databases = DATABASES if metafunc.function.__name__ in SERVER_TESTS_ON_EVERY_DATABASE else ("sqlite",)
        metafunc.parametrize("pxe_server_database", databases, indirect=True, scope="session")


@pytest.fixture(scope="session")
def pxe_server_database(request) -> str:
    return getattr(request, "param", "sqlite")


@pytest.fixture(scope="session")
def pxe_server(request, tmp_path_factory, pxe_installer, pxe_server_database) -> PxeServer:
    """`metalstream serve` on a loopback port (2 gthread workers, TFTP too), with a 1 GiB sparse image and a
    small one; on SQLite, or with `--db` on a new PostgreSQL database (which `image add` migrates)."""
    from lab.service_proc import ServiceProcess

    db_url = None
    if pxe_server_database == "postgresql":
        db_url = request.getfixturevalue("pg_cluster").create_database()  # empty: `image add` migrates it
    root = tmp_path_factory.mktemp(f"server-{pxe_server_database}")
    data_dir = root / "data"
    big = root / "big.tar.zst"
    big_size = 1 << 30
    images = ["small"]
    if pxe_server_database == "sqlite":  # the download tests (which need the big one) run on SQLite only
        with open(big, "wb") as f:
            f.truncate(big_size)
            for offset in range(0, big_size, 64 << 20):  # a few non-zero marks so a wrong offset is visible
                f.seek(offset)
                f.write(offset.to_bytes(8, "big") * 512)
        pxe_write_image(root, "big", tarball=big)
        images.append("big")
    pxe_write_image(root, "small")
    for name in images:
        subprocess.run([*METALSTREAM, "image", "add", "--create", "--data-dir", data_dir, *db_options(db_url),
                        root / f"{name}.json"], check=True, capture_output=True)
    admin = cli_admin_token(data_dir, db_url)
    tftp_port = free_udp_port()
    service = ServiceProcess(data_dir, installer=pxe_installer, agent_timeout=8, options=[
        "--threads", "16", "--tftp", str(tftp_port), "--sweep-interval", "1", *db_options(db_url)])
    service.public_url = service.url
    with service:
        yield PxeServer(service, admin, "big", big_size, "small", tftp_port, pxe_server_database, db_url)


def write_signed_installer(directory: Path, *, kernel_repeats: int = 400, initrd_bytes: int = 200_000) -> Path:
    """A fake installer manifest in `directory` carrying (fake, small) signed loaders: shim and network grub beside
    its kernel (for the Secure Boot TFTP and HTTP boot tests)."""
    import os

    from metalstream.contracts.manifests import file_entry, installer_manifest, write_document

    (directory / "vmlinuz").write_bytes(b"MZ fake signed kernel\n" * kernel_repeats)
    (directory / "initrd.img").write_bytes(os.urandom(initrd_bytes))
    (directory / "shimx64.efi").write_bytes(b"MZ fake shim\n" * 700)
    (directory / "grubx64.efi").write_bytes(b"MZ fake grubnetx64\n" * 900)
    manifest = installer_manifest(
        name="installer", kernel=file_entry(directory / "vmlinuz"), initramfs=file_entry(directory / "initrd.img"),
        kernel_version="6.1.0-test", created=1700000000, kickstart_sha256="0" * 64,
        initramfs_uncompressed_size=initrd_bytes, file_count=2, module_count=0, agent_sha256="0" * 64,
        secure_boot={"shim": file_entry(directory / "shimx64.efi"), "grub": file_entry(directory / "grubx64.efi")})
    return write_document(directory / "installer.json", manifest)
