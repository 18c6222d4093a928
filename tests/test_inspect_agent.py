"""The agent's inspection against the real service (`metalstream serve --discovery` child process): the boot script
of an unknown MAC carries an inspection token; the agent posts the facts and powers off; the machine is `new`. A
deploying agent's facts land on its machine. A refused report leaves the machine up and says why."""
from __future__ import annotations

import copy
import io

import pytest
import requests

from test_inspect_service import FACTS, OTHER_MAC

from fixtures_pxe import PXE_MAC


@pytest.fixture(scope="module")
def discovery_service(tmp_path_factory, pxe_installer, pxe_image_manifest):
    from fixtures_e2e import service_with_image
    from lab.service_proc import ServiceProcess

    data_dir = tmp_path_factory.mktemp("discovery") / "data"
    _, engine, image, token = service_with_image(data_dir, pxe_image_manifest, "inspection tests")
    with ServiceProcess(data_dir, installer=pxe_installer, options=["--discovery"]) as service:
        service.admin = {"Authorization": f"Bearer {token}"}
        service.engine = engine
        yield service
    engine.dispose()


def _token_from_boot_script(service, mac: str) -> str:
    script = requests.get(f"{service.url}/boot/{mac}.ipxe", timeout=30).text
    assert "metalstream.mode=inspect" in script, script
    return script.split("metalstream.token=")[1].split()[0]


def test_the_agent_reports_and_powers_off(discovery_service):
    from deployer.inspect_agent import run_inspection
    from pxe import machines

    token = _token_from_boot_script(discovery_service, PXE_MAC)
    out, powered_off = io.StringIO(), []
    code = run_inspection(discovery_service.url, token, out=out, poweroff=lambda: powered_off.append(True),
                          collect=lambda: FACTS, wait=10)
    assert code == 0 and powered_off == [True], out.getvalue()
    assert "facts reported (machine new-525400123456); powering off" in out.getvalue()
    machine = machines.find_by_mac(discovery_service.engine, PXE_MAC)
    assert machine["state"] == "new" and machine["facts"] == FACTS
    assert machines.find_by_mac(discovery_service.engine, OTHER_MAC)["id"] == machine["id"]


def test_a_refused_report_keeps_the_machine_up_and_says_why(discovery_service):
    from deployer.inspect_agent import run_inspection

    out, powered_off = io.StringIO(), []
    code = run_inspection(discovery_service.url, "i.not-a-token-this-service-made", out=out,
                          poweroff=lambda: powered_off.append(True), collect=lambda: FACTS, wait=5)
    assert code == 1 and powered_off == []
    assert "inspection not reported" in out.getvalue() and "HTTP 401" in out.getvalue()
    bad = copy.deepcopy(FACTS)
    bad["firmware"] = "openfirmware"
    mac = "52:54:00:00:00:77"
    bad["nics"][0]["mac"] = mac
    code = run_inspection(discovery_service.url, _token_from_boot_script(discovery_service, mac), out=out,
                          poweroff=lambda: powered_off.append(True), collect=lambda: bad, wait=5)
    assert code == 1 and powered_off == [] and "facts.firmware" in out.getvalue()


def test_a_deploying_agent_sends_its_facts_to_its_machine(discovery_service):
    from deployer.inspect_agent import send_facts
    from pxe import machines

    mac = "52:54:00:00:00:42"
    machine = machines.create(discovery_service.engine, None, name="rack2-node1", macs=[mac])
    response = requests.post(f"{discovery_service.url}/api/v1/deployments", headers=discovery_service.admin,
                             json={"mac": mac, "image": "tiny"}, timeout=30)
    assert response.status_code == 201, response.text
    script = requests.get(f"{discovery_service.url}/boot/{mac}.ipxe", timeout=30).text
    assert "metalstream.mode" not in script  # a deployment is pending: the installer installs
    token = script.split("metalstream.token=")[1].split()[0]
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    send_facts(session, discovery_service.url, verify=True, collect=lambda: FACTS)
    assert machines.get(discovery_service.engine, machine["id"])["facts"] == FACTS
