"""The API and `metalstream install --plan` judge deploy values by the same rules (metalstream.contracts.rules).

Each value goes once through the real REST endpoint (POST /api/v1/deployments, Flask test client) and
once through the real command line (`metalstream install --plan PLAN.json --dry-run`), and both must
give the same verdict: accepted, or refused naming the same field.
"""
from __future__ import annotations

import json

import pytest

from metalstream.contracts.plan import ImageRef, Plan

from conftest import public_key_line, run_cli
from fixtures_pxe import PXE_MAC

SHA512_CRYPT = "$6$saltsalt$IxDD3jeSOb5eB1CX5LBsqZFVkJdido3OUILO5Ifz5iwMuTS4XMS130MTSuDDl3aCI6WouIL9AjRbLCelDCy.g."
YESCRYPT = "$y$j9T$F5Jx5fExrKuPp53xLKQ..1$X3DX6M94c7o.9agCG9G317fhZg9SqC.5i5rd.RhAtQ7"
KEY = public_key_line("ops@example")
OK, REFUSED = "accepted", "refused"

# (field, value as the API takes it, verdict both must give)
CASES = [
    ("root_password_hash", "!", OK),
    ("root_password_hash", "!!", OK),
    ("root_password_hash", "*", OK),
    ("root_password_hash", SHA512_CRYPT, OK),
    ("root_password_hash", YESCRYPT, OK),
    ("root_password_hash", "!" + SHA512_CRYPT, OK),
    ("root_password_hash", "", REFUSED),
    ("root_password_hash", "hunter2", REFUSED),
    ("root_password_hash", "$6$", REFUSED),
    ("root_password_hash", "$6$salt salt$hash-with-a-space", REFUSED),
    ("root_password_hash", "$6$sålt$ünïcödé-hash", REFUSED),
    ("root_password_hash", "$6$salt$" + "a" * 2000, REFUSED),
    ("root_password_hash", SHA512_CRYPT + ":0:99999", REFUSED),
    ("hostname", "node-1", OK),
    ("hostname", "Node-1.Example.org", OK),
    ("hostname", "a" * 63 + ".example", OK),
    ("hostname", "", REFUSED),
    ("hostname", "-node", REFUSED),
    ("hostname", "a..b", REFUSED),
    ("hostname", "a" * 64, REFUSED),
    ("hostname", "nöde", REFUSED),
    ("hostname", "node_1", REFUSED),
    ("hostname", "node\n1", REFUSED),
    ("hostname", ".".join(["abcdefgh"] * 29), REFUSED),  # 260 characters
    ("ssh_keys", [KEY], OK),
    ("ssh_keys", [public_key_line("ünïcödé comment ✓")], OK),
    ("ssh_keys", [public_key_line("rsa@x", "ssh-rsa", seed=2)], OK),
    ("ssh_keys", [""], REFUSED),
    ("ssh_keys", ["not a key"], REFUSED),
    ("ssh_keys", [KEY + "\n" + KEY], REFUSED),
    ("ssh_keys", [KEY.replace("ssh-ed25519", "ssh-rsa", 1)], REFUSED),  # blob of another type
    ("ssh_keys", ["ssh-dss AAAAB3NzaC1kc3MAAACBAP"], REFUSED),
    ("ssh_keys", [KEY + " " + "x" * 20000], REFUSED),
    ("kernel_args", [], OK),
    ("kernel_args", ["quiet"], OK),
    ("kernel_args", ["console=ttyS0,115200"], OK),
    ("kernel_args", ["metalstream.token=stolen"], REFUSED),
    ("kernel_args", ["a;reboot"], REFUSED),
    ("kernel_args", ["$(reboot)"], REFUSED),
    ("kernel_args", ["é=1"], REFUSED),
    ("kernel_args", ["x" * 257], REFUSED),
    ("boot_mode", "uefi", OK),
    ("boot_mode", "both", OK),
    ("boot_mode", "UEFI", REFUSED),
    ("boot_mode", "", REFUSED),
    ("boot_mode", "legacy", REFUSED),
    ("disk_hints", {"model": "QEMU HARDDISK", "min_size_gib": 8}, OK),
    ("disk_hints", {"serial": "S123", "rotational": False}, OK),
    ("disk_hints", {"serial": "a\nb"}, REFUSED),
    ("disk_hints", {"min_size_gib": -1}, REFUSED),
    ("disk_hints", {"min_size_gib": 8, "max_size_gib": 4}, REFUSED),
    ("disk_hints", {"rotational": "yes"}, REFUSED),
    ("disk_hints", {"max_size_gib": float("inf")}, REFUSED),
    ("disk_hints", {"colour": "red"}, REFUSED),
]


def _api_verdict(pxe_env, field: str, value) -> tuple[str, str | None]:
    response = pxe_env.post_deployment({"mac": PXE_MAC, "image": "tiny", field: value})
    body = response.get_json()
    if response.status_code == 201:
        assert pxe_env.client.delete(f"/api/v1/deployments/{body['id']}", headers=pxe_env.admin).status_code == 200
        return OK, None
    assert response.status_code == 400, body
    return REFUSED, body.get("field")


def _install_verdict(tmp_path, image: dict, tarball: str, field: str, value) -> tuple[str, str | None]:
    plan = Plan(image=ImageRef(image["name"], tarball, image["sha256"], image["size"], image["manifest"])).to_json()
    plan[field] = " ".join(value) if field == "kernel_args" else value
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan))
    result = run_cli("install", "--plan", str(path), "--to", str(tmp_path / "disk.img"), "--size", "4G", "--dry-run")
    if result.returncode == 0:
        return OK, None
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    located = result.stderr.split(f"{path}: ", 1)[1].split(":", 1)[0].removeprefix("plan.")
    return REFUSED, located


def test_the_api_and_install_give_the_same_verdict_for_every_value(pxe_env, tmp_path):
    assert len(CASES) >= 30
    image = pxe_env.client.get("/api/v1/images/tiny", headers=pxe_env.read).get_json()
    tarball = str(pxe_env.image_manifest.parent / image["manifest"]["tarball"])
    disagreements = []
    for field, value, expected in CASES:
        api, api_field = _api_verdict(pxe_env, field, value)
        cli, cli_field = _install_verdict(tmp_path, image, tarball, field, value)
        same_place = api_field is None or cli_field is None or cli_field.startswith(api_field.split("[")[0])
        if not (api == cli == expected and same_place):
            disagreements.append((field, value if len(repr(value)) < 80 else repr(value)[:77] + "...",
                                  f"api {api} {api_field}", f"install {cli} {cli_field}", f"expected {expected}"))
    assert disagreements == []


@pytest.mark.parametrize("field", ["hostname", "root_password_hash", "ssh_keys", "kernel_args", "boot_mode"])
def test_each_field_is_covered_both_ways(field):
    verdicts = {expected for name, _, expected in CASES if name == field}
    assert verdicts == {OK, REFUSED}
