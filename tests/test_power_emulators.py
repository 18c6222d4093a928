"""The power drivers against real BMC emulators in front of a real libvirt (TCG) domain: sushy-tools' Redfish
emulator and virtualbmc. Status, on, off, reset and the boot device really change the domain (virsh domstate,
its boot order); a wrong password is an auth error with the BMC's words and leaves the domain alone; a BMC
nobody answers at is unreachable after bounded retries. And the supervisor powers a deployment's machine.
No OS boots: the domain only reaches its firmware."""
from __future__ import annotations

import logging
import socket

import pytest

from pxe.config import ServiceConfig
from pxe.power import AUTH, UNREACHABLE, PowerError, driver_for

pytestmark = [pytest.mark.root]

PASSWORD = "power-Emulator-pw-3"



@pytest.fixture
def config(tmp_path):
    return ServiceConfig(data_dir=tmp_path / "data", bmc_timeout=30, bmc_retries=3, bmc_concurrency=2)


def guarded(bmc: dict, config: ServiceConfig):
    sleeps: list[float] = []
    return driver_for(bmc, config, sleep=sleeps.append), sleeps


def redfish_emulator(tmp_path, domain):
    from lab.bmc import SushyEmulator
    return SushyEmulator(tmp_path / "sushy", [domain.name], password=PASSWORD)


def ipmi_emulator(tmp_path, domain):
    from lab.bmc import VirtualBmc
    return VirtualBmc(tmp_path / "vbmc", domain.name, password=PASSWORD)


EMULATORS = {"redfish": (redfish_emulator, ["interface", "disk"], ["disk"]),
             "ipmi": (ipmi_emulator, ["network"], ["hd"])}


@pytest.mark.parametrize("driver", EMULATORS)
def test_power_and_boot_device_change_the_domain(driver, domain, tmp_path, config, caplog):
    from lab.bmc import machine_bmc
    caplog.set_level(logging.DEBUG)
    make, network_first, disk_only = EMULATORS[driver]
    with make(tmp_path, domain) as emulator:
        bmc, _ = guarded(machine_bmc(emulator), config)
        assert bmc.status() == "off"
        bmc.set_boot_device("network", once=True)
        assert domain.boot_order() == network_first
        bmc.power_on()
        domain.wait_state("running")
        assert bmc.status() == "on"
        resets = len(emulator.power_requests())
        bmc.reset()
        assert len(emulator.power_requests()) == resets + 1
        domain.wait_state("running")
        bmc.power_off(graceful_timeout=0)
        domain.wait_state("shut off")
        assert bmc.status() == "off"
        bmc.set_boot_device("disk", once=False)
        assert domain.boot_order() == disk_only
    assert PASSWORD not in caplog.text


@pytest.mark.parametrize("driver", EMULATORS)
def test_a_graceful_power_off_the_os_ignores_is_forced_after_the_timeout(driver, domain, tmp_path, config):
    from lab.bmc import machine_bmc
    make = EMULATORS[driver][0]
    with make(tmp_path, domain) as emulator:
        bmc, _ = guarded(machine_bmc(emulator), config)
        bmc.power_on()
        domain.wait_state("running")
        bmc.power_off(graceful_timeout=2)  # the firmware does not act on ACPI power button presses
        domain.wait_state("shut off")
        requests = emulator.power_requests()
    assert len(requests) == 3  # on, the graceful request, the forced off
    if driver == "ipmi":  # vbmcd names them (sushy-emulator's access log does not show the reset type)
        assert "Soft power off called" in requests[1] and "Power off called" in requests[2]


@pytest.mark.parametrize("driver", EMULATORS)
def test_a_wrong_password_is_an_auth_error_with_the_bmcs_words_and_the_domain_is_untouched(
        driver, domain, tmp_path, config):
    from lab.bmc import machine_bmc
    make = EMULATORS[driver][0]
    with make(tmp_path, domain) as emulator:
        bmc, sleeps = guarded({**machine_bmc(emulator), "password": "wrong-" + PASSWORD[:8]}, config)
        with pytest.raises(PowerError) as caught:
            bmc.power_on()
        requests = emulator.power_requests()
    assert caught.value.kind == AUTH and sleeps == [] and caught.value.attempts == 1, caught.value.message
    assert PASSWORD[:8] not in caught.value.message
    said = {"redfish": "HTTP 401: Incorrect username or password", "ipmi": "credentials refused: > RAKP 2 HMAC is invalid"}
    assert said[driver] in caught.value.message
    assert requests == [] and domain.state() == "shut off"


@pytest.mark.parametrize("driver", ["redfish", "ipmi"])
def test_an_emulator_that_is_not_running_is_unreachable_after_bounded_retries(driver, config):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM if driver == "redfish" else socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    address = f"http://127.0.0.1:{port}" if driver == "redfish" else f"127.0.0.1:{port}"
    bmc, sleeps = guarded({"driver": driver, "address": address, "username": "admin", "password": PASSWORD}, config)
    with pytest.raises(PowerError) as caught:
        bmc.status()
    assert caught.value.kind == UNREACHABLE and caught.value.attempts == 3 and sleeps == [1.0, 2.0]


@pytest.mark.parametrize("driver", EMULATORS)
def test_the_supervisor_powers_a_deployments_machine_through_the_emulator(driver, domain, tmp_path, pxe_env):
    from lab.bmc import machine_bmc
    from pxe import deployments, machines, power_duties, supervisor
    make, network_first, _ = EMULATORS[driver]
    with make(tmp_path, domain) as emulator:
        machine = machines.create(pxe_env.service.engine, pxe_env.service.secrets, name="vm1",
                                  macs=[domain.spec.mac], bmc=machine_bmc(emulator))
        answer = pxe_env.post_deployment({"machine": machine["id"], "image": "tiny"})
        assert answer.status_code == 201, answer.get_json()
        supervisor.tick(pxe_env.service)
        power_duties.drain(timeout=120)
        domain.wait_state("running")
        assert domain.boot_order() == network_first
        stored = deployments.get_row(pxe_env.service.engine, answer.get_json()["id"])
        assert stored["state"] == "pending" and stored["powered_at"] is not None, stored["error"]
