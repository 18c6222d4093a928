"""REST API and boot-config tests through Flask's test client: every route and its errors."""
from __future__ import annotations

import json
import re

import pytest

from fixtures_pxe import PXE_MAC, pxe_write_image

SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl ops@example"


# --- auth -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("method,path", [
    ("get", "/api/v1/images"), ("post", "/api/v1/images"), ("get", "/api/v1/images/tiny"),
    ("delete", "/api/v1/images/tiny"), ("get", "/api/v1/deployments"), ("post", "/api/v1/deployments"),
    ("get", "/api/v1/deployments/x"), ("delete", "/api/v1/deployments/x"), ("get", "/api/v1/deployments/x/log"),
    ("get", "/api/v1/tokens"), ("post", "/api/v1/tokens"), ("delete", "/api/v1/tokens/x"),
    ("get", "/api/v1/openapi.json"),
])
def test_api_routes_need_a_valid_token(pxe_env, method, path):
    for headers in ({}, {"Authorization": "Bearer msa_nothere_secret"}, {"Authorization": "Basic abc"},
                    {"Authorization": pxe_env.admin["Authorization"][:-2] + "xx"}):
        response = getattr(pxe_env.client, method)(path, headers=headers)
        assert response.status_code == 401, (path, headers, response.get_json())
        assert "token" in response.get_json()["error"]


def test_read_scope_can_only_read(pxe_env):
    assert pxe_env.client.get("/api/v1/images", headers=pxe_env.read).status_code == 200
    assert pxe_env.client.get("/api/v1/deployments", headers=pxe_env.read).status_code == 200
    response = pxe_env.client.post("/api/v1/deployments", json={"mac": PXE_MAC, "image": "tiny"}, headers=pxe_env.read)
    assert response.status_code == 403
    assert pxe_env.client.delete("/api/v1/images/tiny", headers=pxe_env.read).status_code == 403
    assert pxe_env.client.get("/api/v1/tokens", headers=pxe_env.read).status_code == 403
    assert pxe_env.client.get("/api/v1/deployments", headers=pxe_env.admin).get_json()["deployments"] == []


def test_tokens_create_list_revoke(pxe_env):
    response = pxe_env.client.post("/api/v1/tokens", json={"scope": "read", "comment": "cmdb"}, headers=pxe_env.admin)
    assert response.status_code == 201
    token = response.get_json()["token"]
    headers = {"Authorization": f"Bearer {token}"}
    assert pxe_env.client.get("/api/v1/images", headers=headers).status_code == 200
    listed = pxe_env.client.get("/api/v1/tokens", headers=pxe_env.admin).get_json()["tokens"]
    assert {t["comment"] for t in listed} >= {"cmdb"}
    assert all("secret" not in json.dumps(t) for t in listed)
    token_id = token.split("_")[1]
    assert pxe_env.client.delete(f"/api/v1/tokens/{token_id}", headers=pxe_env.admin).status_code == 204
    assert pxe_env.client.get("/api/v1/images", headers=headers).status_code == 401
    assert pxe_env.client.delete("/api/v1/tokens/nope", headers=pxe_env.admin).status_code == 404
    bad = pxe_env.client.post("/api/v1/tokens", json={"scope": "root"}, headers=pxe_env.admin)
    assert bad.status_code == 400 and bad.get_json()["field"] == "scope"
    bad = pxe_env.client.post("/api/v1/tokens", json={"scope": "read", "owner": "x"}, headers=pxe_env.admin)
    assert bad.status_code == 400 and bad.get_json()["field"] == "owner"


# --- images -----------------------------------------------------------------------------------------

def test_images_list_show_add_delete(pxe_env, tmp_path):
    listed = pxe_env.client.get("/api/v1/images", headers=pxe_env.admin).get_json()["images"]
    assert [i["name"] for i in listed] == ["tiny"]
    shown = pxe_env.client.get("/api/v1/images/tiny", headers=pxe_env.admin).get_json()
    assert shown["url_path"] == "/images/tiny.tar.zst" and shown["manifest"]["format"] == "metalstream-image/1"
    manifest = pxe_write_image(tmp_path / "other", "other")
    response = pxe_env.client.post("/api/v1/images", json={"manifest": str(manifest)}, headers=pxe_env.admin)
    assert response.status_code == 201, response.get_json()
    assert pxe_env.client.get("/images/other.tar.zst").status_code == 200
    assert pxe_env.client.delete("/api/v1/images/other", headers=pxe_env.admin).status_code == 204
    assert pxe_env.client.get("/api/v1/images/other", headers=pxe_env.admin).status_code == 404
    assert pxe_env.client.get("/images/other.tar.zst").status_code == 404
    assert pxe_env.client.delete("/api/v1/images/other", headers=pxe_env.admin).status_code == 404


def test_image_add_bad_input(pxe_env, tmp_path):
    post = lambda body: pxe_env.client.post("/api/v1/images", json=body, headers=pxe_env.admin)  # noqa: E731
    assert post({"manifest": "relative.json"}).get_json()["field"] == "manifest"
    assert post({"manifest": "/x.json", "extra": 1}).get_json()["field"] == "extra"
    response = post({"manifest": str(tmp_path / "missing.json")})
    assert response.status_code == 400 and "no such file" in response.get_json()["error"]
    broken = tmp_path / "broken.json"
    broken.write_text('{"format": "metalstream-image/1",\n "name": }')
    response = post({"manifest": str(broken)})
    assert response.status_code == 400 and response.get_json()["field"] == f"{broken}:2"
    manifest = pxe_write_image(tmp_path / "bad", "bad")
    data = json.loads(manifest.read_text())
    for field, value in (("sha256", "abc"), ("sha256", "0" * 64), ("name", "../evil"), ("tarball", "../x.tar.zst"),
                         ("format", "metalstream-image/9"), ("size", -1)):
        manifest.write_text(json.dumps({**data, field: value}))
        response = post({"manifest": str(manifest)})
        assert response.status_code == 400, (field, value)
        assert response.get_json()["field"] == f"{manifest}: {field}", response.get_json()
    assert [i["name"] for i in pxe_env.client.get("/api/v1/images", headers=pxe_env.admin).get_json()["images"]] == ["tiny"]
    response = pxe_env.client.post("/api/v1/images", data="{nope", headers={**pxe_env.admin,
                                                                             "Content-Type": "application/json"})
    assert response.status_code == 400 and response.get_json()["field"] == "body"


def test_image_delete_refused_while_deployment_uses_it(pxe_env):
    dep = pxe_env.pending()
    response = pxe_env.client.delete("/api/v1/images/tiny", headers=pxe_env.admin)
    assert response.status_code == 409 and dep["id"] in response.get_json()["error"]
    pxe_env.client.delete(f"/api/v1/deployments/{dep['id']}", headers=pxe_env.admin)
    assert pxe_env.client.delete("/api/v1/images/tiny", headers=pxe_env.admin).status_code == 204


def test_image_download_range_etag_if_range(pxe_env):
    body = pxe_env.image_manifest.with_name("tiny.tar.zst").read_bytes()
    sha = json.loads(pxe_env.image_manifest.read_text())["sha256"]
    full = pxe_env.client.get("/images/tiny.tar.zst")
    assert full.status_code == 200 and full.data == body
    assert full.headers["ETag"] == f'"{sha}"' and full.headers["Accept-Ranges"] == "bytes"
    assert int(full.headers["Content-Length"]) == len(body)
    part = pxe_env.client.get("/images/tiny.tar.zst", headers={"Range": "bytes=10-"})
    assert part.status_code == 206 and part.data == body[10:]
    assert part.headers["Content-Range"] == f"bytes 10-{len(body) - 1}/{len(body)}"
    same = pxe_env.client.get("/images/tiny.tar.zst", headers={"Range": "bytes=5-9", "If-Range": f'"{sha}"'})
    assert same.status_code == 206 and same.data == body[5:10]
    changed = pxe_env.client.get("/images/tiny.tar.zst", headers={"Range": "bytes=5-9", "If-Range": '"other"'})
    assert changed.status_code == 200 and changed.data == body
    assert pxe_env.client.get("/images/tiny.tar.zst", headers={"If-None-Match": f'"{sha}"'}).status_code == 304
    bad = pxe_env.client.get("/images/tiny.tar.zst", headers={"Range": f"bytes={len(body) + 5}-"})
    assert bad.status_code == 416


@pytest.mark.parametrize("path", [
    "/images/..%2f..%2fetc%2fpasswd", "/images/%2e%2e/metalstream.db", "/images/..%5cmetalstream.db",
    "/images/tiny.tar.zst%00", "/images/.tar.zst", "/images/tiny", "/images/sub/tiny.tar.zst",
    "/images/%2e%2e%2fmetalstream.db", "/images/escape.tar.zst",
])
def test_image_download_refuses_traversal(pxe_env, path):
    store = pxe_env.service.config.image_dir
    (store / "escape.tar.zst").symlink_to(pxe_env.service.config.data_dir / "metalstream.db")
    response = pxe_env.client.get(path)
    assert response.status_code in (400, 404), path
    assert b"SQLite" not in response.data


def test_installer_files(pxe_env, pxe_installer):
    kernel = pxe_env.client.get("/installer/vmlinuz")
    assert kernel.status_code == 200 and kernel.data == (pxe_installer.parent / "vmlinuz").read_bytes()
    initrd = pxe_env.client.get("/installer/initrd.img", headers={"Range": "bytes=0-99"})
    assert initrd.status_code == 206 and initrd.data == (pxe_installer.parent / "initrd.img").read_bytes()[:100]
    assert pxe_env.client.get("/installer/other").status_code == 404


# --- deployments ------------------------------------------------------------------------------------

def test_deployment_create_show_list_cancel(pxe_env):
    created = pxe_env.post_deployment({
        "mac": "52-54-00-12-34-56", "image": "tiny", "hostname": "node-17", "boot_mode": "uefi",
        "disk_hints": {"serial": "S123", "min_size_gib": 8, "rotational": False},
        "root_password_hash": "$6$saltsalt$" + "a" * 86, "ssh_keys": [SSH_KEY],
        "kernel_args": ["console=ttyS0,115200", "quiet"]})
    assert created.status_code == 201, created.get_json()
    dep = created.get_json()
    assert dep["mac"] == PXE_MAC and dep["state"] == "pending" and dep["hostname"] == "node-17"
    assert created.headers["Location"] == f"/api/v1/deployments/{dep['id']}"
    shown = pxe_env.client.get(f"/api/v1/deployments/{dep['id']}", headers=pxe_env.read).get_json()
    assert shown["request"]["disk_hints"]["serial"] == "S123" and shown["events"][0]["state"] == "pending"
    for query in ("", "?state=pending", f"?mac={PXE_MAC.replace(':', '')}"):
        listed = pxe_env.client.get(f"/api/v1/deployments{query}", headers=pxe_env.read).get_json()["deployments"]
        assert [d["id"] for d in listed] == [dep["id"]], query
    assert pxe_env.client.get("/api/v1/deployments?state=active", headers=pxe_env.read).get_json()["deployments"] == []
    assert pxe_env.client.get("/api/v1/deployments?state=bogus", headers=pxe_env.read).get_json()["field"] == "state"
    cancelled = pxe_env.client.delete(f"/api/v1/deployments/{dep['id']}", headers=pxe_env.admin)
    assert cancelled.status_code == 200 and cancelled.get_json()["state"] == "cancelled"
    again = pxe_env.client.delete(f"/api/v1/deployments/{dep['id']}", headers=pxe_env.admin)
    assert again.status_code == 409
    assert pxe_env.client.get("/api/v1/deployments/nope", headers=pxe_env.read).status_code == 404
    assert pxe_env.client.delete("/api/v1/deployments/nope", headers=pxe_env.admin).status_code == 404
    log = pxe_env.client.get(f"/api/v1/deployments/{dep['id']}/log", headers=pxe_env.read)
    assert log.status_code == 200 and log.data == b""


def test_second_open_deployment_for_a_mac_is_refused_until_cancelled(pxe_env):
    first = pxe_env.pending()
    second = pxe_env.post_deployment({"mac": PXE_MAC.upper(), "image": "tiny"})
    assert second.status_code == 409 and second.get_json()["field"] == "mac"
    assert pxe_env.post_deployment({"mac": "52:54:00:12:34:57", "image": "tiny"}).status_code == 201
    pxe_env.client.delete(f"/api/v1/deployments/{first['id']}", headers=pxe_env.admin)
    assert pxe_env.post_deployment({"mac": PXE_MAC, "image": "tiny"}).status_code == 201


def test_idempotency_key(pxe_env):
    body = {"mac": PXE_MAC, "image": "tiny", "hostname": "n1"}
    first = pxe_env.post_deployment(body, **{"Idempotency-Key": "k-1"})
    replay = pxe_env.post_deployment(body, **{"Idempotency-Key": "k-1"})
    assert first.status_code == 201 and replay.status_code == 200
    assert replay.get_json()["id"] == first.get_json()["id"]
    other = pxe_env.post_deployment({**body, "hostname": "n2"}, **{"Idempotency-Key": "k-1"})
    assert other.status_code == 409 and other.get_json()["field"] == "Idempotency-Key"
    assert pxe_env.post_deployment(body, **{"Idempotency-Key": "x" * 300}).get_json()["field"] == "Idempotency-Key"
    assert len(pxe_env.client.get("/api/v1/deployments", headers=pxe_env.read).get_json()["deployments"]) == 1


BAD_DEPLOYMENTS = [
    ({"mac": PXE_MAC}, "image"),
    ({"image": "tiny"}, "mac"),
    ({"mac": PXE_MAC, "image": "tiny", "color": "red"}, "color"),
    ({"mac": "52:54:00:12:34", "image": "tiny"}, "mac"),
    ({"mac": "52:54:00-12:34:56", "image": "tiny"}, "mac"),
    ({"mac": "zz:54:00:12:34:56", "image": "tiny"}, "mac"),
    ({"mac": 12, "image": "tiny"}, "mac"),
    ({"mac": PXE_MAC, "image": "../tiny"}, "image"),
    ({"mac": PXE_MAC, "image": "tiny", "image_sha256": "md5:abc"}, "image_sha256"),
    ({"mac": PXE_MAC, "image": "tiny", "image_sha256": "A" * 64}, "image_sha256"),
    ({"mac": PXE_MAC, "image": "tiny", "image_sha256": "0" * 64}, "image_sha256"),
    ({"mac": PXE_MAC, "image": "tiny", "hostname": "bad host"}, "hostname"),
    ({"mac": PXE_MAC, "image": "tiny", "hostname": "a\nkernel evil"}, "hostname"),
    ({"mac": PXE_MAC, "image": "tiny", "hostname": "hôte"}, "hostname"),
    ({"mac": PXE_MAC, "image": "tiny", "kernel_args": ["a b"]}, "kernel_args[0]"),
    ({"mac": PXE_MAC, "image": "tiny", "kernel_args": ["ok", "x;reboot"]}, "kernel_args[1]"),
    ({"mac": PXE_MAC, "image": "tiny", "kernel_args": "quiet"}, "kernel_args"),
    ({"mac": PXE_MAC, "image": "tiny", "kernel_args": ["${evil}"]}, "kernel_args[0]"),
    ({"mac": PXE_MAC, "image": "tiny", "boot_mode": "legacy"}, "boot_mode"),
    ({"mac": PXE_MAC, "image": "tiny", "disk_hints": {"colour": 1}}, "disk_hints.colour"),
    ({"mac": PXE_MAC, "image": "tiny", "disk_hints": {"min_size_gib": -1}}, "disk_hints.min_size_gib"),
    ({"mac": PXE_MAC, "image": "tiny", "disk_hints": {"min_size_gib": 9, "max_size_gib": 8}}, "disk_hints.min_size_gib"),
    ({"mac": PXE_MAC, "image": "tiny", "disk_hints": {"rotational": "yes"}}, "disk_hints.rotational"),
    ({"mac": PXE_MAC, "image": "tiny", "disk_hints": {"serial": "a\nb"}}, "disk_hints.serial"),
    ({"mac": PXE_MAC, "image": "tiny", "root_password_hash": "hunter2"}, "root_password_hash"),
    ({"mac": PXE_MAC, "image": "tiny", "ssh_keys": ["ssh-ed25519 AAAA\nssh-rsa BBBB"]}, "ssh_keys[0]"),
    ({"mac": PXE_MAC, "image": "tiny", "ssh_keys": "ssh-ed25519 AAAA"}, "ssh_keys"),
    ({"mac": PXE_MAC, "image": "tiny", "ssh_address": "host"}, "ssh_address"),
    ({"mac": PXE_MAC, "image": "tiny", "kickstart": 5}, "kickstart"),
    ([1, 2], "body"),
]


@pytest.mark.parametrize("body,field", BAD_DEPLOYMENTS)
def test_deployment_bad_input_is_400_naming_the_field_and_stores_nothing(pxe_env, body, field):
    response = pxe_env.post_deployment(body)
    assert response.status_code == 400, response.get_json()
    assert response.get_json()["field"] == field
    assert pxe_env.client.get("/api/v1/deployments", headers=pxe_env.read).get_json()["deployments"] == []
    assert "metalstream.token" not in pxe_env.client.get(f"/boot/{PXE_MAC}.ipxe").get_data(as_text=True)


def test_deployment_unknown_image_and_malformed_json(pxe_env):
    response = pxe_env.post_deployment({"mac": PXE_MAC, "image": "nope"})
    assert response.status_code == 404 and response.get_json()["field"] == "image"
    for raw in ("", "{", '{"mac": "x",}', "\xff"):
        response = pxe_env.client.post("/api/v1/deployments", data=raw,
                                       headers={**pxe_env.admin, "Content-Type": "application/json"})
        assert response.status_code == 400 and response.get_json()["field"] == "body", raw


# --- boot configs -----------------------------------------------------------------------------------

def test_chain_script(pxe_env):
    response = pxe_env.client.get("/boot.ipxe")
    assert response.status_code == 200
    assert response.get_data(as_text=True) == (
        "#!ipxe\n"
        "# metalstream: fetch this machine's own boot script, keyed by the MAC of the NIC iPXE booted from\n"
        "chain --autofree http://10.0.2.2:8080/boot/${netX/mac:hexhyp}.ipxe || goto failed\n"
        "exit\n"
        ":failed\n"
        "echo metalstream: could not fetch the boot script from http://10.0.2.2:8080; booting from local disk\n"
        "iseq ${platform} efi && exit ||\n"
        "sanboot --no-describe --drive 0x80\n")


LOCAL_IPXE = ("#!ipxe\n"
              "# metalstream: no install pending for 52:54:00:12:34:56; boot from local disk\n"
              "iseq ${platform} efi && exit ||\n"
              "sanboot --no-describe --drive 0x80\n")


def test_unknown_mac_boots_local_disk_in_any_notation(pxe_env):
    for mac in (PXE_MAC, "52-54-00-12-34-56", "525400123456", "52:54:00:12:34:56".upper()):
        assert pxe_env.client.get(f"/boot/{mac}.ipxe").get_data(as_text=True) == LOCAL_IPXE
    bad = pxe_env.client.get("/boot/not-a-mac.ipxe")
    assert bad.status_code == 400 and bad.get_json()["field"] == "mac"


def test_pending_deployment_gets_exact_installer_script_then_local_after_install(pxe_env):
    dep = pxe_env.pending(hostname="node-17", kernel_args=["quiet"])
    response = pxe_env.client.get("/boot/52-54-00-12-34-56.ipxe")
    script = response.get_data(as_text=True)
    token = script.split("metalstream.token=")[1].split()[0]
    assert token.startswith(dep["id"] + ".") and len(token.split(".")[1]) >= 43  # 256-bit secret
    assert script == (
        "#!ipxe\n"
        f"# metalstream deployment {dep['id']}: install tiny on 52:54:00:12:34:56\n"
        "kernel http://10.0.2.2:8080/installer/vmlinuz initrd=initrd.img metalstream.server=http://10.0.2.2:8080 "
        f"metalstream.token={token} metalstream.deployment={dep['id']} metalstream.hostname=node-17 "
        "console=ttyS0,115200 quiet\n"
        "initrd http://10.0.2.2:8080/installer/initrd.img\n"
        "boot\n")
    assert response.headers["Cache-Control"] == "no-store"
    assert pxe_env.client.get(f"/api/v1/deployments/{dep['id']}", headers=pxe_env.read).get_json()["state"] == "booting"
    # the agent installs and reports success: from now on the MAC boots its disk, never the installer again
    auth = {"Authorization": f"Bearer {token}"}
    assert pxe_env.client.get("/api/v1/agent/plan", headers=auth).status_code == 200
    result = {"success": True, "phase": "finish", "error": None, "log": "done", "root_uuid": "1234-abcd"}
    assert pxe_env.client.post("/api/v1/agent/result", json=result, headers=auth).status_code == 200
    assert pxe_env.client.get(f"/boot/{PXE_MAC}.ipxe").get_data(as_text=True) == LOCAL_IPXE
    local_grub = pxe_env.client.get(f"/boot/grub/{PXE_MAC}.cfg").get_data(as_text=True)
    assert local_grub.startswith("# metalstream: no install pending for 52:54:00:12:34:56; boot this machine's own disk")
    assert "configfile /boot/grub/grub.cfg" in local_grub and local_grub.endswith("\nexit\n")
    assert not re.search(r"^\s*(linux|initrd)\b", local_grub, re.M)
    # the disk it installed, by the root filesystem UUID the agent reported: not the first disk with a grub.cfg
    assert "\nif search --no-floppy --fs-uuid --set=root 1234-abcd; then\n" in local_grub
    assert "--file /boot/grub/grub.cfg" not in local_grub


def test_grub_configs(pxe_env):
    assert pxe_env.client.get("/boot/grub.cfg").get_data(as_text=True) == (
        "# metalstream: fetch this machine's own GRUB config, keyed by its MAC\n"
        "set timeout=0\n"
        "configfile (http,10.0.2.2:8080)/boot/grub/${net_default_mac}.cfg\n")
    dep = pxe_env.pending()
    cfg = pxe_env.client.get(f"/boot/grub/{PXE_MAC}.cfg").get_data(as_text=True)
    token = cfg.split("metalstream.token=")[1].split()[0]
    assert cfg == (
        f"# metalstream deployment {dep['id']}: install tiny on 52:54:00:12:34:56\n"
        "set timeout=0\n"
        'menuentry "metalstream: install tiny" {\n'
        "    linux (http,10.0.2.2:8080)/installer/vmlinuz metalstream.server=http://10.0.2.2:8080 "
        f"metalstream.token={token} metalstream.deployment={dep['id']} console=ttyS0,115200\n"
        "    initrd (http,10.0.2.2:8080)/installer/initrd.img\n"
        "}\n")


def test_rebooting_in_booting_state_mints_a_new_token_and_voids_the_old(pxe_env):
    pxe_env.pending()
    first = pxe_env.boot_token()
    second = pxe_env.boot_token()
    assert first != second
    assert pxe_env.client.get("/api/v1/agent/plan", headers={"Authorization": f"Bearer {first}"}).status_code == 401
    assert pxe_env.client.get("/api/v1/agent/plan", headers={"Authorization": f"Bearer {second}"}).status_code == 200


def test_template_error_is_500_never_local_boot(tmp_path, pxe_installer, pxe_image_manifest):
    from pxe.app import create_app
    from pxe.config import ServiceConfig
    overrides = tmp_path / "templates"
    overrides.mkdir()
    (overrides / "local.ipxe.j2").write_text("#!ipxe\n{{ no_such_variable }}\n")
    (overrides / "installer.ipxe.j2").write_text("#!ipxe\n{% if %}\n")
    app = create_app(ServiceConfig(data_dir=tmp_path / "d", installer=pxe_installer, template_dir=overrides,
                                   supervisor_interval=0))
    client = app.test_client()
    response = client.get(f"/boot/{PXE_MAC}.ipxe")
    assert response.status_code == 500 and b"sanboot" not in response.data and b"exit" not in response.data
    assert response.get_json()["error"] and b"no_such_variable" not in response.data


def test_hostile_host_header_is_refused(tmp_path, pxe_installer):
    from pxe.app import create_app
    from pxe.config import ServiceConfig
    app = create_app(ServiceConfig(data_dir=tmp_path / "d", installer=pxe_installer, supervisor_interval=0))
    response = app.test_client().get("/boot.ipxe", headers={"Host": "evil$(x)"})
    assert response.status_code == 400
    assert app.test_client().get("/boot.ipxe", headers={"Host": "10.0.0.5:8080"}).get_data(as_text=True).count(
        "http://10.0.0.5:8080/boot/") == 1


def test_pending_without_installer_is_503_not_local_boot(tmp_path, pxe_image_manifest):
    from pxe import imagestore, tokens
    from pxe.app import create_app
    from pxe.config import ServiceConfig
    app = create_app(ServiceConfig(data_dir=tmp_path / "d", supervisor_interval=0))
    svc = app.extensions["metalstream"]
    imagestore.register(svc.engine, svc.config.image_dir, pxe_image_manifest)
    admin = {"Authorization": "Bearer " + tokens.create_api_token(svc.engine, "admin")}
    client = app.test_client()
    assert client.post("/api/v1/deployments", json={"mac": PXE_MAC, "image": "tiny"}, headers=admin).status_code == 201
    response = client.get(f"/boot/{PXE_MAC}.ipxe")
    assert response.status_code == 503 and b"sanboot" not in response.data


# --- meta -------------------------------------------------------------------------------------------

def test_openapi_document_matches_routes(pxe_env):
    doc = pxe_env.client.get("/api/v1/openapi.json", headers=pxe_env.read).get_json()
    documented = {(path, method) for path, ops in doc["paths"].items() for method in ops}
    routed = set()
    for rule in pxe_env.app.url_map.iter_rules():
        if rule.rule.startswith("/api/v1/"):
            path = rule.rule.replace("<", "{").replace(">", "}")
            routed |= {(path, m.lower()) for m in rule.methods - {"HEAD", "OPTIONS"}}
    assert documented == routed


def test_metrics(pxe_env):
    pxe_env.pending()
    pxe_env.client.get("/images/tiny.tar.zst")
    text = pxe_env.client.get("/metrics").get_data(as_text=True)
    assert 'metalstream_deployments{state="pending"} 1.0' in text
    assert 'metalstream_deployments{state="active"} 0.0' in text
    assert 'metalstream_served_bytes_total{kind="image"}' in text
    assert 'metalstream_http_request_duration_seconds_count{route="/boot/<mac>.ipxe"}' in text or \
        'metalstream_http_request_duration_seconds_bucket' in text


def test_root_leads_to_the_console(pxe_env):
    page = pxe_env.client.get("/")
    assert page.status_code == 302 and page.headers["Location"] == "/console/"


# --- deploy-time kickstart --------------------------------------------------------------------------

DEPLOY_KS = """\
clearpart --all --initlabel
zerombr
part /boot/efi --fstype=efi --size=200
part / --fstype=ext4 --size=2000 --grow
bootloader --append="console=ttyS0,115200"
network --bootproto=dhcp --hostname=ks-host
"""


def test_deploy_time_kickstart_becomes_the_plans_storage(pxe_env):
    dep = pxe_env.pending(kickstart=DEPLOY_KS)
    token = pxe_env.boot_token()
    plan = pxe_env.client.get("/api/v1/agent/plan", headers={"Authorization": f"Bearer {token}"}).get_json()
    assert plan["deployment_id"] == dep["id"]
    storage = plan["storage"]
    assert storage["clearpart"]["mode"] == "all" and storage["zerombr"] is True
    assert [(p["mountpoint"], p["fstype"], p["size_mib"], p["grow"]) for p in storage["partitions"]] == [
        ("/boot/efi", "efi", 200, False), ("/", "ext4", 2000, True)]
    assert plan["hostname"] == "ks-host" and plan["kernel_args"] == "console=ttyS0,115200"


@pytest.mark.parametrize("text,field,words", [
    ("clearpart --all\npart / --fstype=ext4 --size=abc\n", "kickstart:2", "size"),
    ("part / --fstype=ext4 --size=100\nfrobnicate\n", "kickstart:2", "frobnicate"),
    ("part / --size=100\n%ksappend http://127.0.0.1/more.ks\n", "kickstart:2", "%ksappend"),
    ("{% include 'x' %}\n", "kickstart:1", "template"),
    ("clearpart --all\npart / --size=99999999999999999999\n", "kickstart:2", "larger than any disk"),
])
def test_deploy_time_kickstart_errors_are_located(pxe_env, text, field, words):
    response = pxe_env.post_deployment({"mac": PXE_MAC, "image": "tiny", "kickstart": text})
    assert response.status_code == 400, response.get_json()
    body = response.get_json()
    assert body["field"] == field and words in body["error"], body
    assert pxe_env.client.get("/api/v1/deployments", headers=pxe_env.read).get_json()["deployments"] == []
