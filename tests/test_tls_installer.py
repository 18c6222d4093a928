"""An installer with the service's CA inside (`make_installer` with `--ca`, on the root of the session's real
installer build): where the CA lands, what the manifest records, and that the agent in it pins the CA
by default (it refuses a plain-http service before any request)."""
from __future__ import annotations

import hashlib
import json

import pytest

from metalstream.contracts.manifests import read_installer_manifest
from metalstream.tls import INSTALLER_CA_PATH
from tarball_builder.chroot import Chroot
from tarball_builder.installer import make_installer

from conftest import require_tools
from fixtures_installer import initramfs_listing, installer_context, unpacked_initramfs

pytestmark = pytest.mark.root


def test_installer_built_with_a_ca_pins_it(installer_build, tmp_path):
    from lab.tls import make_ca

    require_tools("unshare", "chroot", "cpio", "zstd")
    manifest, _, root = installer_build
    ca = make_ca(tmp_path / "ca")
    built = make_installer(installer_context(root, tmp_path / "out", tmp_path / "work", epoch=manifest["created"],
                                             ca_file=ca.cert))
    assert built["ca_sha256"] == hashlib.sha256(ca.cert.read_bytes()).hexdigest()
    assert read_installer_manifest(json.loads(json.dumps(built)), "installer manifest")["ca_sha256"]
    assert "ca_sha256" not in manifest  # the plain build records none
    initramfs = tmp_path / "out" / built["initramfs"]["file"]
    listing = initramfs_listing(initramfs)
    assert str(INSTALLER_CA_PATH.relative_to("/")) in listing
    assert not any(name.endswith(".key") for name in listing)
    with unpacked_initramfs(initramfs) as tree:
        assert (tree / INSTALLER_CA_PATH.relative_to("/")).read_bytes() == ca.cert.read_bytes()
        with Chroot(tree) as chroot:
            refused = chroot.run(["python3", "-m", "metalstream", "agent", "--server", "http://10.0.2.2:8080",
                                  "--token", "t" * 20, "--no-reboot", "--plan-wait", "0"], check=False)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "plain http" in refused.stdout + refused.stderr
    assert str(INSTALLER_CA_PATH) in refused.stdout + refused.stderr
