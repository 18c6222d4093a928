"""pxe.power.guard: retries with backoff for transient BMC failures only, a per-BMC concurrency bound,
and the driver for a machine's BMC. The drivers here are small in-test objects: the BMC is the
hardware boundary; the real clients are tested against real servers in test_power_redfish.py and
test_power_emulators.py."""
from __future__ import annotations

import threading

import pytest

from pxe.config import ServiceConfig
from pxe.power import AUTH, BMC_ERROR, TIMEOUT, UNREACHABLE, BmcAccess, NoPowerControl, PowerError, driver_for
from pxe.power.guard import GuardedDriver, backoff_delays, bmc_slots
from pxe.power.ipmi import IpmiDriver, split_address
from pxe.power.redfish import RedfishDriver


class ScriptedBmc:
    """Answers each status() with the next item of `script`: an exception to raise or a value."""

    def __init__(self, *script):
        self.script = list(script)
        self.calls = 0

    def status(self):
        self.calls += 1
        item = self.script.pop(0)
        if isinstance(item, Exception):
            raise item
        return item


def guarded(driver, address="10.9.9.9:623", attempts=3, concurrency=2):
    sleeps: list[float] = []
    return GuardedDriver(driver, address, attempts=attempts, concurrency=concurrency, sleep=sleeps.append), sleeps


@pytest.mark.parametrize("kind", [UNREACHABLE, TIMEOUT, BMC_ERROR])
def test_transient_failures_are_retried_with_exponential_backoff_then_succeed(kind):
    bmc = ScriptedBmc(PowerError(kind, "first"), PowerError(kind, "second"), "on")
    guard, sleeps = guarded(bmc)
    assert guard.status() == "on"
    assert bmc.calls == 3
    assert sleeps == [1.0, 2.0]


def test_attempts_are_bounded_and_the_last_error_says_how_many_were_made():
    bmc = ScriptedBmc(*(PowerError(UNREACHABLE, f"no route {i}", address="bmc1") for i in range(10)))
    guard, sleeps = guarded(bmc, attempts=4)
    with pytest.raises(PowerError) as caught:
        guard.status()
    assert bmc.calls == 4
    assert sleeps == [1.0, 2.0, 4.0]
    assert caught.value.kind == UNREACHABLE
    assert caught.value.message == "no route 3 (after 4 attempts)"
    assert caught.value.attempts == 4


def test_refused_credentials_are_never_retried():
    bmc = ScriptedBmc(PowerError(AUTH, "bad password"), "on")
    guard, sleeps = guarded(bmc)
    with pytest.raises(PowerError) as caught:
        guard.status()
    assert (bmc.calls, sleeps, caught.value.kind, caught.value.message) == (1, [], AUTH, "bad password")


def test_an_error_the_driver_marks_permanent_is_not_retried():
    bmc = ScriptedBmc(PowerError(BMC_ERROR, "HTTP 400: unknown boot target", transient=False), "on")
    guard, sleeps = guarded(bmc)
    with pytest.raises(PowerError):
        guard.status()
    assert bmc.calls == 1 and sleeps == []


def test_backoff_is_capped():
    assert backoff_delays(1) == []
    assert backoff_delays(8, base=1.0, cap=30.0) == [1, 2, 4, 8, 16, 30, 30]


def test_at_most_n_calls_at_once_reach_one_bmc_and_other_bmcs_are_not_held_up():
    inside, most = [0], [0]
    lock, entered, release = threading.Lock(), threading.Condition(), threading.Event()

    class SlowBmc:
        def status(self):
            with lock:
                inside[0] += 1
                most[0] = max(most[0], inside[0])
            with entered:
                entered.notify_all()
            release.wait(30)
            with lock:
                inside[0] -= 1
            return "on"

    address = "bmc-concurrency-test:623"
    guards = [guarded(SlowBmc(), address=address, concurrency=2)[0] for _ in range(5)]
    threads = [threading.Thread(target=g.status) for g in guards]
    for thread in threads:
        thread.start()
    with entered:
        assert entered.wait_for(lambda: inside[0] == 2, timeout=30)
    assert not bmc_slots(address, 2).acquire(blocking=False), "a third call could enter"
    # another BMC's calls go through while this one's slots are taken
    assert guarded(ScriptedBmc("off"), address="other-bmc:623", concurrency=2)[0].status() == "off"
    release.set()
    for thread in threads:
        thread.join(30)
    assert most[0] == 2 and inside[0] == 0


def test_a_retry_waits_outside_the_bmcs_slot():
    address = "bmc-backoff-test:623"
    free_while_waiting = []
    guard = GuardedDriver(ScriptedBmc(PowerError(TIMEOUT, "slow"), "on"), address, attempts=2, concurrency=1,
                          sleep=lambda s: free_while_waiting.append(_free(bmc_slots(address, 1))))
    assert guard.status() == "on"
    assert free_while_waiting == [True]


def _free(slot: threading.BoundedSemaphore) -> bool:
    if slot.acquire(blocking=False):
        slot.release()
        return True
    return False


def test_driver_for_picks_the_client_and_refuses_manual_power(tmp_path):
    config = ServiceConfig(data_dir=tmp_path, bmc_timeout=7, bmc_retries=5, bmc_concurrency=1)
    redfish = driver_for({"driver": "redfish", "address": "https://192.0.2.10", "username": "u", "password": "p",
                          "verify_tls": False, "system_id": None}, config)
    assert isinstance(redfish.driver, RedfishDriver) and redfish.driver.timeout == 7 and redfish.attempts == 5
    assert redfish.driver.access.verify_tls is False
    ipmi = driver_for(BmcAccess("ipmi", "192.0.2.11:6230", "u", "p"), config)
    assert isinstance(ipmi.driver, IpmiDriver)
    for manual in (None, {"driver": "manual", "address": "", "username": None, "password": None}):
        with pytest.raises(NoPowerControl) as caught:
            driver_for(manual, config)
        assert caught.value.http_status == 409


def test_the_password_stays_out_of_repr_and_error_details():
    access = BmcAccess("ipmi", "10.1.1.2", "admin", "hunter2-secret")
    assert "hunter2-secret" not in repr(access) and "hunter2-secret" not in str(access)
    error = PowerError(AUTH, "credentials refused", address=access.address)
    assert error.details == {"kind": AUTH, "bmc": "10.1.1.2", "attempts": 1}


@pytest.mark.parametrize("address, expected", [
    ("10.0.0.5", ("10.0.0.5", 623)), ("10.0.0.5:6230", ("10.0.0.5", 6230)), ("bmc.example", ("bmc.example", 623)),
    ("[fd00::5]:6230", ("fd00::5", 6230)), ("[fd00::5]", ("fd00::5", 623)), ("fd00::5", ("fd00::5", 623)),
])
def test_ipmi_addresses(address, expected):
    assert split_address(address) == expected


@pytest.mark.parametrize("stderr, kind, words", [
    # what ipmitool -v printed against virtualbmc (wrong password, unknown user) and a port nobody serves
    ("Loading IANA PEN Registry...\nUsing best available cipher suite 3\n\n> RAKP 2 HMAC is invalid\n"
     "Error: Unable to establish IPMI v2 / RMCP+ session\n", AUTH,
     "credentials refused: > RAKP 2 HMAC is invalid | Error: Unable to establish IPMI v2 / RMCP+ session"),
    ("> Error: no response from RAKP 1 message\n" * 4 + "Set Session Privilege Level to ADMINISTRATOR failed\n"
     "Error: Unable to establish IPMI v2 / RMCP+ session\n", AUTH, "no response from RAKP 1 message"),
    ("Loading IANA PEN Registry...\nGet Auth Capabilities error\nError issuing Get Channel Authentication "
     "Capabilities request\nError: Unable to establish IPMI v2 / RMCP+ session\n", UNREACHABLE,
     "unreachable: Get Auth Capabilities error | Error issuing Get Channel Authentication Capabilities request"),
    ("Set Chassis Power Control to Cycle failed: Command not supported in present state\n", BMC_ERROR,
     "Command not supported in present state"),
])
def test_ipmitool_failures_are_sorted_by_what_it_said(stderr, kind, words):
    from metalstream.errors import CommandError
    from pxe.power.ipmi import power_error
    error = power_error("10.0.0.9", CommandError(["ipmitool"], 1, stderr))
    assert error.kind == kind and words in error.message and "IANA" not in error.message
    timed_out = power_error("10.0.0.9", CommandError(["ipmitool"], None, "", timed_out=True))
    assert timed_out.kind == TIMEOUT
