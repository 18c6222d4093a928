"""The Redfish driver (sushy) against a real HTTP server in the test that answers like a BMC
(tests/power_stub.py): what each operation sends, and how every kind of failure comes back — with
the BMC's own message, retried only when that may help, and never with the password in a log."""
from __future__ import annotations

import base64
import logging
import socket

import pytest

from pxe.power import AUTH, BMC_ERROR, TIMEOUT, UNREACHABLE, BmcAccess, PowerError
from pxe.power.guard import GuardedDriver
from pxe.power.redfish import RedfishDriver

from power_stub import SYSTEM, RedfishStub

PASSWORD = "s3cr3t-Redfish-pw"


@pytest.fixture
def stub():
    with RedfishStub(password=PASSWORD) as server:
        yield server


def driver(address: str, password: str = PASSWORD, *, attempts: int = 3, timeout: float = 10.0, **access):
    sleeps: list[float] = []
    bmc = RedfishDriver(BmcAccess("redfish", address, "admin", password, **access), timeout=timeout)
    return GuardedDriver(bmc, address, attempts=attempts, concurrency=2, sleep=sleeps.append), sleeps


def test_status_on_off_reset_and_boot_override_reach_the_bmc(stub):
    bmc, _ = driver(stub.url)
    assert bmc.status() == "off"
    bmc.set_boot_device("network", once=True)
    bmc.power_on()
    assert stub.power == "On" and bmc.status() == "on"
    bmc.reset()
    bmc.set_boot_device("disk", once=False)
    bmc.power_off(graceful_timeout=0)
    assert stub.power == "Off" and bmc.status() == "off"
    assert stub.actions() == [
        ("PATCH", {"Boot": {"BootSourceOverrideTarget": "Pxe", "BootSourceOverrideEnabled": "Once"}}),
        ("POST", {"ResetType": "On"}),
        ("POST", {"ResetType": "ForceRestart"}),
        ("PATCH", {"Boot": {"BootSourceOverrideTarget": "Hdd", "BootSourceOverrideEnabled": "Continuous"}}),
        ("POST", {"ResetType": "ForceOff"}),
    ]


def test_graceful_power_off_asks_the_os_first(stub):
    stub.power = "On"
    bmc, _ = driver(stub.url)
    bmc.power_off(graceful_timeout=30)  # the stub powers off at once on GracefulShutdown
    assert stub.actions() == [("POST", {"ResetType": "GracefulShutdown"})]
    assert stub.power == "Off"


def test_a_named_system_is_used_and_an_unknown_one_is_the_bmcs_404(stub):
    bmc, _ = driver(stub.url, system_id=SYSTEM)
    assert bmc.status() == "off"
    assert driver(stub.url, system_id=SYSTEM.rsplit("/", 1)[1])[0].status() == "off"  # the id alone
    wrong, sleeps = driver(stub.url, system_id="nope")
    with pytest.raises(PowerError) as caught:
        wrong.status()
    assert caught.value.kind == BMC_ERROR and "HTTP 404" in caught.value.message and sleeps == []


def test_a_bmc_answering_500_fails_after_bounded_retries_with_its_own_message(stub):
    stub.fail_actions_with = (500, "Internal controller fault: fan bus hung")
    bmc, sleeps = driver(stub.url, attempts=3)
    with pytest.raises(PowerError) as caught:
        bmc.power_on()
    assert caught.value.kind == BMC_ERROR
    assert "HTTP 500: Internal controller fault: fan bus hung (after 3 attempts)" in caught.value.message
    assert [m for m, _ in stub.actions()] == ["POST"] * 3
    assert sleeps == [1.0, 2.0]
    assert stub.power == "Off"


def test_wrong_password_is_an_auth_error_with_the_bmcs_message_and_is_not_retried(stub):
    bmc, sleeps = driver(stub.url, password="not-the-password")
    with pytest.raises(PowerError) as caught:
        bmc.status()
    assert caught.value.kind == AUTH
    assert caught.value.message.endswith("HTTP 401: Invalid username or password for this BMC")
    assert sleeps == [] and [p for m, p, _ in stub.requests].count("/redfish/v1/Systems") == 1


def test_an_unreachable_bmc_is_retried_then_reported_unreachable():
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    bmc, sleeps = driver(f"http://127.0.0.1:{port}", attempts=3)
    with pytest.raises(PowerError) as caught:
        bmc.status()
    assert caught.value.kind == UNREACHABLE and "Connection refused" in caught.value.message
    assert caught.value.attempts == 3 and sleeps == [1.0, 2.0]


def test_a_bmc_that_does_not_answer_times_out(stub):
    stub.hang.set()
    bmc, _ = driver(stub.url, attempts=1, timeout=0.5)
    with pytest.raises(PowerError) as caught:
        bmc.status()
    assert caught.value.kind == TIMEOUT


def test_tls_is_verified_unless_the_machine_says_not_to(tmp_path):
    from lab.tls import issue_server_cert, make_ca
    cert = issue_server_cert(make_ca(tmp_path / "ca"), tmp_path / "srv", ip_addresses=["127.0.0.1"])
    with RedfishStub(password=PASSWORD, tls=cert) as stub:
        strict, sleeps = driver(stub.url)
        with pytest.raises(PowerError) as caught:
            strict.status()
        assert caught.value.kind == UNREACHABLE and "TLS failed" in caught.value.message
        assert "CERTIFICATE_VERIFY_FAILED" in caught.value.message and sleeps == []  # retrying will not help
        lax, _ = driver(stub.url, verify_tls=False)
        assert lax.status() == "off"


def test_the_password_never_reaches_a_log_line(stub, caplog):
    caplog.set_level(logging.DEBUG)
    basic = base64.b64encode(f"admin:{PASSWORD}".encode()).decode()
    bmc, _ = driver(stub.url)
    bmc.set_boot_device("network", once=True)
    bmc.power_on()
    stub.fail_actions_with = (500, "boom")
    with pytest.raises(PowerError):
        bmc.reset()
    with pytest.raises(PowerError):
        driver(stub.url, password=PASSWORD + "x")[0].status()
    assert "SessionService" in caplog.text  # sushy did log its requests, bodies included
    assert PASSWORD not in caplog.text and basic not in caplog.text
