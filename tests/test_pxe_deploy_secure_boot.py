"""Deployments that ask for Secure Boot, through the REST API (Flask test client, SQLite and PostgreSQL):
refused for an image without the signed shim, grub and kernel or a BIOS-only boot mode, carried into
the agent's plan, and shown in the deployment with what the installer and the installed system reported."""
from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import update

from fixtures_images import make_image
from fixtures_pxe import PXE_MAC

SIGNED_DEBIAN = [{"name": name, "version": "1", "arch": "amd64"}
                 for name in ("shim-signed", "grub-efi-amd64-signed", "linux-image-6.1.0-21-amd64", "linux-image-amd64")]
UNSIGNED_DEBIAN = [{"name": name, "version": "1", "arch": "amd64"}
                   for name in ("shim-unsigned", "grub-efi-amd64-bin", "linux-image-6.1.0-21-amd64-unsigned")]
SIGNED_FILES = ("usr/lib/shim/shimx64.efi.signed", "usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed",
                "usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed")
UNSIGNED_FILES = ("usr/lib/shim/shimx64.efi", "usr/lib/grub/x86_64-efi/normal.mod")
DEPLOY_KS = """\
part / --fstype=ext4 --size=2000 --grow
%addon org_metalstream_deploy
secure_boot=true
%end
"""


def _add_image(pxe_env, tmp_path: Path, name: str, files: tuple[str, ...], packages: list[dict],
               family: str = "debian") -> None:
    """A real image of a tree holding `files`, whose manifest lists `packages`, registered through the API."""
    tree = tmp_path / f"{name}-tree"
    for file in ("etc/os-release", *files):
        (tree / file).parent.mkdir(parents=True, exist_ok=True)
        (tree / file).write_text("ID=debian\n" if file == "etc/os-release" else f"{file}\n")
    manifest = make_image(tree, tmp_path / "images", name, family=family, release="bookworm", packages=packages)
    response = pxe_env.client.post("/api/v1/images", json={"manifest": str(manifest)}, headers=pxe_env.admin)
    assert response.status_code == 201, response.get_json()


@pytest.fixture
def signed_image(pxe_env, tmp_path) -> str:
    _add_image(pxe_env, tmp_path, "signed", SIGNED_FILES, SIGNED_DEBIAN)
    return "signed"


def _plan(pxe_env) -> dict:
    script = pxe_env.client.get(f"/boot/{PXE_MAC}.ipxe").get_data(as_text=True)
    token = script.split("metalstream.token=")[1].split()[0]
    return pxe_env.client.get("/api/v1/agent/plan", headers={"Authorization": f"Bearer {token}"}).get_json()


def _listed(pxe_env) -> list[dict]:
    return pxe_env.client.get("/api/v1/deployments", headers=pxe_env.read).get_json()["deployments"]


def _refused(pxe_env, body: dict) -> dict:
    response = pxe_env.post_deployment(body)
    assert response.status_code == 400, response.get_json()
    assert _listed(pxe_env) == []
    return response.get_json()


def test_secure_boot_is_carried_into_the_plan_and_shown(pxe_env, signed_image):
    created = pxe_env.post_deployment({"mac": PXE_MAC, "image": signed_image, "secure_boot": True, "boot_mode": "uefi"})
    assert created.status_code == 201, created.get_json()
    dep = created.get_json()
    assert dep["secure_boot"] == {"requested": True, "installer": None, "target": None}
    assert dep["boot_path"] is None and dep["first_stage"] is None and dep["request"]["secure_boot"] is True
    assert _listed(pxe_env)[0]["secure_boot"]["requested"] is True
    plan = _plan(pxe_env)
    assert plan["secure_boot"] is True and plan["format"] == "metalstream-plan/1.4"


def test_what_the_installer_and_the_installed_system_reported_is_shown(pxe_env, signed_image):
    from pxe import db

    dep = pxe_env.pending(image=signed_image, secure_boot=True)
    fetch = {"loader": "shimx64.efi", "client": "10.0.2.15", "mac": PXE_MAC, "at": 1700000000.5}
    with pxe_env.service.engine.begin() as conn:  # filled by the boot path, the agent and the activation check
        conn.execute(update(db.deployments).where(db.deployments.c.id == dep["id"]).values(
            boot_path="shim-grub", first_stage=fetch, installer_secure_boot=True, target_secure_boot=False))
    shown = pxe_env.client.get(f"/api/v1/deployments/{dep['id']}", headers=pxe_env.read).get_json()
    assert shown["boot_path"] == "shim-grub" and shown["first_stage"] == fetch
    assert shown["secure_boot"] == {"requested": True, "installer": True, "target": False}
    assert _listed(pxe_env)[0]["secure_boot"] == shown["secure_boot"]


def test_without_secure_boot_the_request_and_the_plan_are_as_before(pxe_env, signed_image):
    dep = pxe_env.pending(image=signed_image)
    assert dep["secure_boot"] == {"requested": False, "installer": None, "target": None}
    assert "secure_boot" not in dep["request"]  # same request digest as before the field existed
    assert "secure_boot" not in _plan(pxe_env)  # what a 1.1 agent reads


def test_an_explicit_false_is_kept_and_the_plan_leaves_secure_boot_out(pxe_env, signed_image):
    dep = pxe_env.pending(image=signed_image, secure_boot=False)
    assert dep["secure_boot"]["requested"] is False and dep["request"]["secure_boot"] is False
    plan = _plan(pxe_env)
    assert "secure_boot" not in plan


def test_an_image_without_the_signed_chain_is_refused_naming_the_packages(pxe_env, tmp_path):
    _add_image(pxe_env, tmp_path, "unsigned", UNSIGNED_FILES, UNSIGNED_DEBIAN)
    body = _refused(pxe_env, {"mac": PXE_MAC, "image": "unsigned", "secure_boot": True})
    assert body["field"] == "secure_boot"
    assert body["error"] == ("image unsigned has no signed shim, grub and kernel for Secure Boot: add shim-signed, "
                             "grub-efi-amd64-signed and linux-image-amd64 to its kickstart's %packages and rebuild it")


def test_shim_alone_is_not_enough(pxe_env, tmp_path):
    packages = [{"name": name, "version": "1", "arch": "amd64"} for name in ("shim-signed", "linux-image-amd64")]
    _add_image(pxe_env, tmp_path, "shim-only", SIGNED_FILES[:1], packages)
    body = _refused(pxe_env, {"mac": PXE_MAC, "image": "shim-only", "secure_boot": True})
    assert body["field"] == "secure_boot"
    assert "no signed grub" in body["error"] and "add grub-efi-amd64-signed to" in body["error"]


def test_an_image_of_another_family_is_refused_with_both_families_packages(pxe_env, tmp_path):
    _add_image(pxe_env, tmp_path, "other", SIGNED_FILES, SIGNED_DEBIAN, family="test")
    body = _refused(pxe_env, {"mac": PXE_MAC, "image": "other", "secure_boot": True})
    assert body["field"] == "secure_boot"
    assert "shim-signed, grub-efi-amd64-signed and linux-image-amd64 (Debian)" in body["error"]
    assert "shim-x64, grub2-efi-x64 and kernel (RPM family)" in body["error"]


@pytest.mark.parametrize("extra, words", [
    ({"secure_boot": True, "boot_mode": "bios"}, "UEFI"),
    ({"secure_boot": "yes"}, "expected"),
    ({"secure_boot": 1}, "expected"),
])
def test_bad_secure_boot_requests_are_refused(pxe_env, signed_image, extra, words):
    body = _refused(pxe_env, {"mac": PXE_MAC, "image": signed_image, **extra})
    assert body["field"] == "secure_boot" and words in body["error"], body


def test_a_deploy_time_kickstart_can_ask_for_secure_boot(pxe_env, signed_image):
    body = _refused(pxe_env, {"mac": PXE_MAC, "image": "tiny", "kickstart": DEPLOY_KS})
    assert body["field"] == "kickstart:3" and "Secure Boot" in body["error"]
    dep = pxe_env.pending(image=signed_image, kickstart=DEPLOY_KS)
    assert dep["secure_boot"]["requested"] is True and "secure_boot" not in dep["request"]
    plan = _plan(pxe_env)
    assert plan["secure_boot"] is True and plan["storage"]["secure_boot"] == {"required": True, "line": 3}


def test_a_deploy_time_kickstart_with_a_bad_secure_boot_value_is_located(pxe_env, signed_image):
    body = _refused(pxe_env, {"mac": PXE_MAC, "image": signed_image,
                              "kickstart": DEPLOY_KS.replace("secure_boot=true", "secure_boot=on")})
    assert body["field"] == "kickstart:3" and "true or false" in body["error"]


def test_the_requests_false_wins_over_the_kickstarts_true(pxe_env):
    # image `tiny` has no signed chain and boot_mode is bios: both refused if the kickstart's true counted
    dep = pxe_env.pending(kickstart=DEPLOY_KS, secure_boot=False, boot_mode="bios")
    assert dep["secure_boot"]["requested"] is False and dep["request"]["secure_boot"] is False
    assert _listed(pxe_env)[0]["secure_boot"]["requested"] is False
    plan = _plan(pxe_env)
    assert "secure_boot" not in plan and "secure_boot" not in plan["storage"]
    assert plan["storage"]["partitions"][0]["mountpoint"] == "/"  # the rest of the kickstart still applies


def test_the_requests_true_wins_over_the_kickstarts_false(pxe_env, signed_image):
    kickstart = DEPLOY_KS.replace("secure_boot=true", "secure_boot=false")
    body = _refused(pxe_env, {"mac": PXE_MAC, "image": "tiny", "kickstart": kickstart, "secure_boot": True})
    assert body["field"] == "secure_boot"
    dep = pxe_env.pending(image=signed_image, kickstart=kickstart, secure_boot=True)
    assert dep["secure_boot"]["requested"] is True
    assert _plan(pxe_env)["secure_boot"] is True


def test_a_request_that_also_asks_is_located_at_its_own_field(pxe_env):
    body = _refused(pxe_env, {"mac": PXE_MAC, "image": "tiny", "kickstart": DEPLOY_KS, "secure_boot": True})
    assert body["field"] == "secure_boot"


# --- a forced network boot path (boot_path; the TFTP side is in test_pxe_tftp_bootpath.py) ----------------

@pytest.mark.parametrize("extra, words", [
    ({"boot_path": "shim-grub", "boot_mode": "bios"}, "shim-grub is a UEFI path and boot_mode is bios"),
    ({"boot_path": "ipxe", "secure_boot": True}, "ipxe cannot boot with Secure Boot on"),
    ({"boot_path": "ipxe", "kickstart": DEPLOY_KS}, "ipxe cannot boot with Secure Boot on"),
    ({"boot_path": "pxe"}, "auto, ipxe, shim-grub"),
    ({"boot_path": 1}, ""),
])
def test_a_boot_path_the_deployment_cannot_take_is_refused_at_its_field(pxe_env, signed_image, extra, words):
    body = _refused(pxe_env, {"mac": PXE_MAC, "image": signed_image, **extra})
    assert body["field"] == "boot_path" and words in body["error"], body


def test_a_forced_boot_path_is_kept_in_the_request_and_only_when_given(pxe_env, signed_image):
    dep = pxe_env.pending(image=signed_image, secure_boot=True, boot_path="shim-grub")
    assert dep["request"]["boot_path"] == "shim-grub" and dep["boot_path"] is None  # the path taken: none yet
    assert "boot_path" not in pxe_env.pending("52:54:00:00:00:02", image=signed_image)["request"]
    assert pxe_env.pending("52:54:00:00:00:03", boot_path="ipxe", secure_boot=False)["request"]["boot_path"] == "ipxe"
