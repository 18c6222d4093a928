"""How a deployment's agent boots the installed system: `reboot_method` per deployment, else the service's
`--reboot-method` default; the plan carries `reboot` only for kexec (an older agent reads a firmware plan)."""
from __future__ import annotations

import pytest

from metalstream.errors import BadInput

from fixtures_pxe import PXE_MAC


def _plan(pxe_env) -> dict:
    token = pxe_env.boot_token()
    response = pxe_env.client.get("/api/v1/agent/plan", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def test_a_deployment_without_reboot_method_gets_a_firmware_plan_by_default(pxe_env):
    pxe_env.pending()
    plan = _plan(pxe_env)
    assert "reboot" not in plan


def test_a_deployment_asking_for_kexec_gets_it_in_its_plan_and_its_record(pxe_env):
    dep = pxe_env.pending(reboot_method="kexec")
    assert _plan(pxe_env)["reboot"] == {"method": "kexec"}
    shown = pxe_env.client.get(f"/api/v1/deployments/{dep['id']}", headers=pxe_env.read).get_json()
    assert shown["request"]["reboot_method"] == "kexec"


def test_the_service_default_applies_unless_the_deployment_says_otherwise(pxe_env):
    pxe_env.service.config.reboot_method = "kexec"
    pxe_env.pending()
    assert _plan(pxe_env)["reboot"] == {"method": "kexec"}


def test_a_deployment_can_insist_on_firmware_under_a_kexec_default(pxe_env):
    pxe_env.service.config.reboot_method = "kexec"
    pxe_env.pending(mac=PXE_MAC, reboot_method="firmware")
    assert "reboot" not in _plan(pxe_env)


@pytest.mark.parametrize("value", ["warm", 1, ""])
def test_an_unknown_reboot_method_is_refused_at_its_field(pxe_env, value):
    response = pxe_env.post_deployment({"mac": PXE_MAC, "image": "tiny", "reboot_method": value})
    assert response.status_code == 400
    body = response.get_json()
    assert "reboot_method" in str(body) and "firmware, kexec" in str(body)


def test_the_service_default_is_checked(tmp_path):
    from pxe.config import ServiceConfig

    assert ServiceConfig(data_dir=tmp_path).reboot_method == "firmware"
    with pytest.raises(BadInput) as caught:
        ServiceConfig(data_dir=tmp_path, reboot_method="warm")
    assert caught.value.location == "--reboot-method"


def test_openapi_documents_the_field(pxe_env):
    spec = pxe_env.client.get("/api/v1/openapi.json", headers=pxe_env.read).get_json()
    field = spec["components"]["schemas"]["DeploymentCreate"]["properties"]["reboot_method"]
    assert field["enum"] == ["firmware", "kexec"]
