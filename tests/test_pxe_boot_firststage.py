"""First-stage loader fetches: the neighbour table parser (real /proc/net/arp text), the events and messages,
and the sweeper that fails a pending deployment whose machine fetched a loader and then asked for nothing
(real rows on SQLite and PostgreSQL through pxe_env)."""
from __future__ import annotations

import time

import pytest

from fixtures_pxe import PXE_MAC
from pxe import deployments, firststage, firststage_store, supervisor

# /proc/net/arp as the kernel writes it: a header, complete entries (flags 0x2), a permanent one (0x6),
# an incomplete one (0x0, MAC all zeroes) and the same address on two devices.
ARP_TABLE = """\
IP address       HW type     Flags       HW address            Mask     Device
10.231.0.50      0x1         0x2         52:54:00:12:34:56     *        msbr0
10.231.0.51      0x1         0x0         00:00:00:00:00:00     *        msbr0
10.231.0.52      0x1         0x6         52:54:00:AB:CD:EF     *        msbr0
192.0.2.1        0x1         0x2         02:fc:00:00:00:05     *        eth0
10.231.0.50      0x1         0x2         52:54:00:99:99:99     *        eth1
"""


def test_neighbour_table_parser_reads_the_kernels_format():
    assert firststage.parse_neighbours(ARP_TABLE) == {
        "10.231.0.50": "52:54:00:12:34:56", "10.231.0.52": "52:54:00:ab:cd:ef", "192.0.2.1": "02:fc:00:00:00:05"}
    assert firststage.parse_neighbours(ARP_TABLE.splitlines()[0]) == {}
    assert firststage.parse_neighbours("") == {}
    garbage = ARP_TABLE.splitlines()[0] + "\nnot an entry\n10.0.0.1 0x1 0x2 zz:zz\nfe80::1 0x1 0x2 52:54:00:12:34:56 * x\n"
    assert firststage.parse_neighbours(garbage) == {}


# /proc/net/route as the kernel writes it (addresses in hex, host byte order): a default route through a router,
# two connected networks, a host route through a router, and a route that is down.
ROUTE_TABLE = """\
Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0
eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
msbr0\t0000E70A\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0
eth0\t0900000A\t010200C0\t0007\t0\t0\t0\tFFFFFFFF\t0\t0\t0
eth1\t0000A8C0\t00000000\t0000\t0\t0\t0\t00FFFFFF\t0\t0\t0
"""


def test_the_route_parser_keeps_only_networks_reached_without_a_router():
    networks = firststage.parse_connected_networks(ROUTE_TABLE)
    assert [str(n) for n in networks] == ["192.0.2.0/24", "10.231.0.0/16"]
    assert firststage.parse_connected_networks(ROUTE_TABLE.splitlines()[0] + "\neth0 zz 0 1 0 0 0 x\n") == []


def test_a_client_behind_a_router_gets_one_neighbour_lookup_without_waiting(tmp_path, monkeypatch):
    from pxe import tftpboot
    routes = tmp_path / "route"
    routes.write_text(ROUTE_TABLE)
    assert tftpboot.on_connected_network("10.231.7.9", routes)
    assert not tftpboot.on_connected_network("10.0.0.9", routes)  # only a host route through a router
    asked = []
    recorder = tftpboot.FirstStageRecorder(engine=None, neighbours=lambda: asked.append(1) or {},
                                           delays=(0.0, 30.0, 60.0),
                                           on_link=lambda client: tftpboot.on_connected_network(client, routes))
    started = time.monotonic()
    assert recorder.lookup("10.0.0.9", time.time()) is None
    assert asked == [1] and time.monotonic() - started < 5


def test_events_name_the_loader_who_fetched_it_and_from_where():
    assert firststage.fetched_event("snponly.efi", "10.0.0.9") == (
        "firmware fetched snponly.efi (iPXE for UEFI, unsigned) over TFTP from 10.0.0.9")
    assert firststage.fetched_event("grubx64.efi", "10.0.0.9") == (
        "shim fetched grubx64.efi (signed network GRUB) over TFTP from 10.0.0.9")


def test_a_quick_second_fetch_of_the_same_loader_is_a_repeat():
    first = firststage.record("snponly.efi", "10.0.0.9", PXE_MAC, 1000.0)
    assert firststage.is_repeat(first, firststage.record("snponly.efi", "10.0.0.9", PXE_MAC, 1001.0))
    assert not firststage.is_repeat(first, firststage.record("snponly.efi", "10.0.0.9", PXE_MAC, 1100.0))
    assert not firststage.is_repeat(first, firststage.record("shimx64.efi", "10.0.0.9", PXE_MAC, 1001.0))
    assert not firststage.is_repeat(first, firststage.record("snponly.efi", "10.0.0.8", PXE_MAC, 1001.0))
    assert not firststage.is_repeat(None, first) and not firststage.is_repeat({"loader": "x"}, first)


AT = 1700000000.0  # 22:13:20 UTC


@pytest.mark.parametrize("loader,expected", [
    ("snponly.efi", "the machine fetched snponly.efi (unsigned iPXE) at 22:13:20 UTC and then asked for nothing "
                    "for 905 s: a UEFI firmware with Secure Boot on refuses unsigned loaders — offer the signed "
                    "path (metalstream dnsmasq-config --uefi-loader shim, with an installer that carries shim and "
                    "grub) or turn Secure Boot off"),
    ("ipxe.efi", "the machine fetched ipxe.efi (unsigned iPXE) at 22:13:20 UTC and then asked for nothing for 905 s: "
                 "a UEFI firmware with Secure Boot on refuses unsigned loaders"),
    ("shimx64.efi", "the machine fetched shimx64.efi (signed shim) at 22:13:20 UTC and then asked for nothing for "
                    "905 s: shim never fetched grubx64.efi"),
    ("grubx64.efi", "the machine fetched grubx64.efi (signed network GRUB, loaded by shim) at 22:13:20 UTC but GRUB "
                    "never asked for its configuration (grub/grub.cfg, then grub/52:54:00:12:34:56.cfg over TFTP) "
                    "within 905 s"),
    ("undionly.kpxe", "the machine fetched undionly.kpxe (iPXE for BIOS) at 22:13:20 UTC and then asked for nothing "
                      "for 905 s: iPXE loaded but never asked for its boot script (/boot.ipxe, then "
                      "/boot/52-54-00-12-34-56.ipxe over HTTP)"),
])
def test_silence_messages_name_the_likely_cause_per_loader(loader, expected):
    message = firststage.silence_message(firststage.record(loader, "10.0.0.9", PXE_MAC, AT), 905.2, PXE_MAC)
    assert message.startswith(expected)
    assert ("Secure Boot" in message) == (loader in ("snponly.efi", "ipxe.efi"))


# --- the sweeper, on real rows ------------------------------------------------------------------------

def _fetch(env, loader: str, at: float) -> str | None:
    return firststage_store.record_first_stage(env.service.engine, PXE_MAC,
                                          firststage.record(loader, "10.0.0.9", PXE_MAC, at))


@pytest.mark.parametrize("loader,cause", [
    ("snponly.efi", "Secure Boot on refuses unsigned loaders"),
    ("ipxe.efi", "Secure Boot on refuses unsigned loaders"),
    ("shimx64.efi", "shim never fetched grubx64.efi"),
    ("grubx64.efi", "GRUB never asked for its configuration"),
    ("undionly.kpxe", "iPXE loaded but never asked for its boot script"),
])
def test_a_pending_deployment_silent_after_a_first_stage_fetch_fails_with_its_cause(pxe_env, loader, cause):
    dep = pxe_env.pending()
    at = time.time() - 50
    assert _fetch(pxe_env, loader, at) == dep["id"]
    timeout = pxe_env.service.config.agent_timeout
    supervisor.tick(pxe_env.service, now=at + timeout - 1)
    assert deployments.get(pxe_env.service.engine, dep["id"])["state"] == "pending"
    supervisor.tick(pxe_env.service, now=at + timeout + 5)
    shown = deployments.get(pxe_env.service.engine, dep["id"])
    assert shown["state"] == "failed" and cause in shown["error"] and f"fetched {loader}" in shown["error"]
    assert shown["events"][-1]["state"] == "failed" and shown["events"][-1]["message"] == shown["error"]
    # the MAC is free again: a new deployment for it can be made
    assert pxe_env.post_deployment({"mac": PXE_MAC, "image": "tiny"}).status_code == 201


def test_pending_deployments_without_a_fetch_are_left_alone(pxe_env):
    dep = pxe_env.pending()
    far = time.time() + 10 * pxe_env.service.config.agent_timeout
    assert firststage_store.reap_silent_after_first_stage(pxe_env.service.engine, 1, now=far) == []
    supervisor.tick(pxe_env.service, now=far)
    assert deployments.get(pxe_env.service.engine, dep["id"])["state"] == "pending"


def test_a_later_fetch_restarts_the_timer_and_one_sweep_fails_it_once(pxe_env):
    dep = pxe_env.pending()
    now = time.time()
    _fetch(pxe_env, "snponly.efi", now - 500)
    _fetch(pxe_env, "shimx64.efi", now - 10)  # the machine tried again, with the signed path this time
    engine = pxe_env.service.engine
    assert firststage_store.reap_silent_after_first_stage(engine, 100, now=now) == []
    assert firststage_store.reap_silent_after_first_stage(engine, 100, now=now + 100) == [dep["id"]]
    assert firststage_store.reap_silent_after_first_stage(engine, 100, now=now + 100) == []  # another replica: nothing
    shown = deployments.get(engine, dep["id"])
    assert "shimx64.efi" in shown["error"] and "snponly.efi" not in shown["error"]
    messages = [e["message"] for e in shown["events"]]
    assert messages[1:3] == ["firmware fetched snponly.efi (iPXE for UEFI, unsigned) over TFTP from 10.0.0.9",
                             "firmware fetched shimx64.efi (signed shim) over TFTP from 10.0.0.9"]
    assert sum(m == shown["error"] for m in messages) == 1


def test_a_machine_whose_deployment_the_sweep_fails_is_free_again(pxe_env):
    created = pxe_env.client.post("/api/v1/machines", headers=pxe_env.admin,
                                  json={"name": "rack1-u1", "macs": [PXE_MAC]})
    assert created.status_code == 201, created.get_json()
    dep = pxe_env.post_deployment({"machine": "rack1-u1", "image": "tiny"}).get_json()
    machine = pxe_env.client.get("/api/v1/machines/rack1-u1", headers=pxe_env.admin).get_json()
    assert machine["current_deployment"]["id"] == dep["id"]
    at = time.time()
    _fetch(pxe_env, "snponly.efi", at)
    assert firststage_store.reap_silent_after_first_stage(pxe_env.service.engine, 100, now=at + 101) == [dep["id"]]
    machine = pxe_env.client.get("/api/v1/machines/rack1-u1", headers=pxe_env.admin).get_json()
    assert machine["state"] == "failed" and machine["current_deployment"] is None
    again = pxe_env.post_deployment({"machine": "rack1-u1", "image": "tiny"})
    assert again.status_code == 201, again.get_json()


def test_a_fetch_on_a_booting_deployment_leaves_its_agent_timer_alone(pxe_env):
    dep = pxe_env.pending()
    pxe_env.boot_token()
    served_at = deployments.get_row(pxe_env.service.engine, dep["id"])["last_seen_at"]
    at = time.time() + 30
    _fetch(pxe_env, "undionly.kpxe", at)
    row = deployments.get_row(pxe_env.service.engine, dep["id"])
    assert row["state"] == "booting" and row["last_seen_at"] == served_at
    assert row["first_stage"]["loader"] == "undionly.kpxe"
    assert firststage_store.reap_silent_after_first_stage(pxe_env.service.engine, 1, now=at + 3600) == []


def test_a_fetch_for_a_mac_without_an_open_deployment_is_not_stored(pxe_env):
    assert _fetch(pxe_env, "snponly.efi", time.time()) is None


def test_a_fetch_stored_late_never_moves_the_timer_or_the_events_back(pxe_env):
    dep = pxe_env.pending()
    now = time.time()
    _fetch(pxe_env, "shimx64.efi", now)
    _fetch(pxe_env, "grubx64.efi", now - 2)  # the recorder stored this one seconds after it happened
    shown = deployments.get(pxe_env.service.engine, dep["id"])
    assert shown["last_seen_at"] == pytest.approx(now)
    times = [e["time"] for e in shown["events"]]
    assert times == sorted(times) and shown["events"][-1]["message"].startswith("shim fetched grubx64.efi")


def test_a_config_asked_for_without_an_installer_is_recorded_and_named_by_the_sweep(pxe_env):
    from pxe.boot import InstallerMissing, select_boot
    dep = pxe_env.pending()
    at = time.time() - 5
    _fetch(pxe_env, "shimx64.efi", at)
    engine = pxe_env.service.engine
    for _ in range(2):  # the machine retries: one event
        with pytest.raises(InstallerMissing):
            select_boot(engine, PXE_MAC, base_url="http://10.0.2.2:8080", installer_available=False,
                        boot_path="shim-grub")
    shown = deployments.get(engine, dep["id"])
    assert shown["state"] == "pending"
    assert [e["message"] for e in shown["events"]][-1] == (
        "the machine asked for its boot config (signed shim + grub over TFTP) but the service has no installer "
        "(metalstream serve --installer)")
    assert sum("no installer" in e["message"] for e in shown["events"]) == 1
    timeout = pxe_env.service.config.agent_timeout
    assert firststage_store.reap_silent_after_first_stage(engine, timeout, now=at + timeout + 1) == [dep["id"]]
    error = deployments.get(engine, dep["id"])["error"]
    assert error.startswith("the machine fetched shimx64.efi at ") and "asked for its boot config at " in error
    assert "the service has no installer to offer it" in error and "nothing" not in error
