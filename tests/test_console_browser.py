"""The web console in a real headless Chromium (Debian's chromium and chromium-driver, through Selenium)
against `metalstream serve` on a loopback port, with the test playing the deployment agent.

Screenshots of every page are saved under the test run's temporary folder (`console-screenshots*`; the
path is printed). The browser resolves no name but 127.0.0.1 (--host-resolver-rules), so nothing the
pages need can come from anywhere else.
"""
from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest
import requests

from conftest import METALSTREAM
from fixtures_pxe import cli_admin_token, pxe_write_image

MAC_WATCHED = "52:54:00:c0:00:01"
MAC_FAILING = "52:54:00:c0:00:02"
MAC_CANCELLED = "52:54:00:c0:00:03"
MAC_MACHINE = "52:54:00:c0:00:04"
CHROMIUM = Path("/usr/lib/chromium/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
WAIT = 30  # seconds a page may take to show what the service already has (a loaded machine)


@pytest.fixture(scope="module")
def live(tmp_path_factory, pxe_installer):
    """`metalstream serve` with image `small`, and an admin and a read token."""
    from lab.service_proc import ServiceProcess

    root = tmp_path_factory.mktemp("console-live")
    data_dir = root / "data"
    pxe_write_image(root, "small")
    subprocess.run([*METALSTREAM, "image", "add", "--create", "--data-dir", data_dir, root / "small.json"],
                   check=True, capture_output=True)
    admin = cli_admin_token(data_dir)
    read = subprocess.run([*METALSTREAM, "token", "create", "--data-dir", data_dir, "--scope", "read"],
                          check=True, capture_output=True, text=True).stdout.strip()
    service = ServiceProcess(data_dir, installer=pxe_installer, agent_timeout=120)
    service.public_url = service.url
    with service:
        yield service, admin, read


@pytest.fixture(scope="module")
def screens(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("console-screenshots")
    print(f"\nconsole screenshots: {folder}")
    return folder


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists() or not CHROMEDRIVER.exists() or shutil.which("chromedriver") is None:
        pytest.fail("Debian's chromium and chromium-driver are not installed: run `bash .ci/setup` "
                    "(.ci/packages/console.txt)", pytrace=False)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as DriverService

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1360,1000", "--no-first-run", "--no-default-browser-check",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--disable-default-apps", "--disable-extensions", "--no-pings",
                     "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=DriverService(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def signed_in(browser, live, token: str | None = None) -> None:
    from selenium.webdriver.common.by import By

    service, admin, _ = live
    browser.delete_all_cookies()
    browser.get(f"{service.url}/console/")
    assert "/console/sign-in" in browser.current_url
    browser.find_element(By.ID, "token").send_keys(token or admin["Authorization"].split()[1])
    browser.find_element(By.CSS_SELECTOR, "#sign-in button").click()
    wait_for(browser, lambda d: "/console/deployments" in d.current_url, "the deployments page after sign-in")


def wait_for(browser, condition, what: str, timeout: float = WAIT):
    from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(browser, timeout, poll_frequency=0.2,
                             ignored_exceptions=(StaleElementReferenceException,)).until(condition)
    except TimeoutException:
        raise AssertionError(f"the page never showed {what}; it shows:\n{browser.find_element('tag name', 'body').text}") from None


def text_of(browser, css: str) -> str:
    from selenium.common.exceptions import NoSuchElementException

    try:
        return browser.find_element("css selector", css).text
    except NoSuchElementException:
        return ""


class Agent:
    """The deployment agent, played over HTTP: the boot script's token, then the plan, events and result."""

    def __init__(self, service, mac: str):
        script = requests.get(f"{service.url}/boot/{mac}.ipxe", timeout=30).text
        self.url = service.url
        self.session = requests.Session()
        self.session.headers["Authorization"] = "Bearer " + script.split("metalstream.token=")[1].split()[0]
        self.plan = self.session.get(f"{self.url}/api/v1/agent/plan", timeout=30).json()

    def event(self, phase: str, message: str, done: int | None = None, total: int | None = None) -> None:
        response = self.session.post(f"{self.url}/api/v1/agent/events", timeout=30, json={
            "phase": phase, "message": message, "bytes_done": done, "bytes_total": total, "time": time.time()})
        assert response.status_code == 200, response.text

    def result(self, success: bool, phase: str, log: str, error: str | None = None) -> None:
        response = self.session.post(f"{self.url}/api/v1/agent/result", timeout=30, json={
            "success": success, "phase": phase, "error": error, "log": log, "root_uuid": "0f3c-77aa" if success else None,
            "time": time.time()})
        assert response.status_code == 200, response.text


def set_facts(data_dir: Path, machine_id: str, facts: dict) -> None:
    """What an inspection would have stored (the service reads them from its database)."""
    from pxe import db, machines

    engine = db.make_engine(f"sqlite:///{data_dir / 'metalstream.db'}", upgrade_schema=False)
    try:
        machines.set_facts(engine, machine_id, facts)
    finally:
        engine.dispose()


def api(live, method: str, path: str, **kwargs):
    service, admin, _ = live
    return requests.request(method, f"{service.url}{path}", headers=admin, timeout=30, **kwargs)


def test_sign_in_deploy_a_mac_and_watch_it_install(browser, live, screens):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    service, _, _ = live
    browser.get(f"{service.url}/console/deployments")
    assert "/console/sign-in" in browser.current_url
    browser.save_screenshot(str(screens / "01-sign-in.png"))
    signed_in(browser, live)

    browser.get(f"{service.url}/console/deploy")
    Select(browser.find_element(By.ID, "image")).select_by_value("small")
    browser.find_element(By.ID, "mac").send_keys(MAC_WATCHED)
    browser.find_element(By.ID, "hostname").send_keys("web-1")
    browser.save_screenshot(str(screens / "02-deploy.png"))
    browser.find_element(By.ID, "start").click()
    wait_for(browser, lambda d: "/console/deployments/" in d.current_url, "the new deployment's page")
    dep_id = browser.current_url.rsplit("/", 1)[1]
    assert text_of(browser, "#state") == "pending"
    shown = api(live, "GET", f"/api/v1/deployments/{dep_id}").json()
    assert (shown["mac"], shown["image"], shown["hostname"]) == (MAC_WATCHED, "small", "web-1")

    browser.execute_script("window.notReloaded = true")  # gone if the page were loaded again
    agent = Agent(service, MAC_WATCHED)
    wait_for(browser, lambda d: text_of(d, "#state") == "installing", "state installing")
    agent.event("partition", "partitioning /dev/vda")
    wait_for(browser, lambda d: text_of(d, "#phase") == "partition", "phase partition")
    total = 64 << 20
    seen = []
    for done in (0, total // 4, total // 2, total * 3 // 4):
        agent.event("stream", "streaming image", done, total)
        expected = 100.0 * done / total
        [value] = wait_for(browser, lambda d: (v := d.execute_script(
            "const p = document.getElementById('progress'); return p ? p.value : null")) is not None
            and abs(v - expected) < 0.2 and [v], f"progress at {expected:.0f} %")
        seen.append(value)
        if done == total // 2:
            browser.save_screenshot(str(screens / "03-deployment-streaming.png"))
    assert seen == sorted(seen) and seen[-1] > seen[0], seen  # the bar moved forward, without a reload
    assert browser.execute_script("return window.notReloaded") is True
    assert "MiB of 64.0 MiB" in text_of(browser, "#bytes") and "/s" in text_of(browser, "#rate")
    assert text_of(browser, "#eta").startswith("ETA ")

    log = "".join(f"2026-01-01 10:00:{i:02d} metalstream.agent INFO step {i}\n" for i in range(12))
    agent.event("finish", "boot loader installed")
    agent.result(True, "finish", log)
    wait_for(browser, lambda d: text_of(d, "#state") == "installed", "state installed")
    wait_for(browser, lambda d: "step 11" in text_of(d, "#log"), "the agent's log")
    timeline = text_of(browser, "#timeline")
    for step in ("pending", "booting", "partition", "stream", "finish", "installed", "agent reported success"):
        assert step in timeline, (step, timeline)
    assert browser.execute_script("return window.notReloaded") is True
    browser.save_screenshot(str(screens / "04-deployment-installed.png"))

    browser.get(f"{service.url}/console/deployments")
    row = browser.find_element(By.CSS_SELECTOR, f'tr[data-id="{dep_id}"]')
    assert "web-1" in row.text and "installed" in row.text
    browser.save_screenshot(str(screens / "05-deployments.png"))


def test_a_failing_deployment_shows_its_failure_line(browser, live, screens):
    service, _, _ = live
    signed_in(browser, live)
    dep = api(live, "POST", "/api/v1/deployments", json={"mac": MAC_FAILING, "image": "small"}).json()
    browser.get(f"{service.url}/console/deployments/{dep['id']}")
    agent = Agent(service, MAC_FAILING)
    agent.event("disk", "choosing the target disk")
    wait_for(browser, lambda d: text_of(d, "#phase") == "disk", "phase disk")
    failure = "no disk matched serial S-404"
    log = ("2026-01-01 10:00:00 metalstream.agent INFO plan for deployment: image small\n"
           f"2026-01-01 10:00:01 metalstream.agent ERROR install failed in phase disk: {failure}\n")
    agent.result(False, "disk", log, failure)
    wait_for(browser, lambda d: text_of(d, "#state") == "failed", "state failed")
    assert text_of(browser, "#failure") == f"Failed: {failure}"
    failing = wait_for(browser, lambda d: d.find_elements("css selector", "#log .line.failing"), "the failing line")
    assert [line.text for line in failing] == [log.splitlines()[1]]
    assert failing[0].value_of_css_property("background-color") != "rgba(0, 0, 0, 0)"  # it stands out
    browser.save_screenshot(str(screens / "06-deployment-failed.png"))


def test_a_cancel_from_the_page_cancels(browser, live, screens):
    from selenium.webdriver.common.by import By

    service, _, _ = live
    signed_in(browser, live)
    dep = api(live, "POST", "/api/v1/deployments", json={"mac": MAC_CANCELLED, "image": "small"}).json()
    browser.get(f"{service.url}/console/deployments/{dep['id']}")
    browser.find_element(By.ID, "cancel").click()
    wait_for(browser, lambda d: text_of(d, "#state") == "cancelled", "state cancelled")
    assert api(live, "GET", f"/api/v1/deployments/{dep['id']}").json()["state"] == "cancelled"
    assert not browser.find_elements(By.ID, "cancel")
    browser.save_screenshot(str(screens / "07-deployment-cancelled.png"))


def test_machines_and_images_pages_and_deploying_a_machine(browser, live, screens):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    service, _, read = live
    machine = api(live, "POST", "/api/v1/machines", json={"name": "rack1-n4", "macs": [MAC_MACHINE],
                                                          "tags": ["rack1"]}).json()
    set_facts(service.data_dir, machine["id"], {
        "cpus": {"count": 16, "model": "AMD EPYC 7302P"}, "memory_mib": 65536, "firmware": "uefi",
        "dmi": {"vendor": "Supermicro", "product": "AS-1014S", "serial": "S19X0042"},
        "disks": [{"name": "nvme0n1", "size_bytes": 960197124096, "model": "SAMSUNG MZQL2960", "serial": "S64F",
                   "wwn": None, "rotational": False, "by_path": "pci-0000:41:00.0-nvme-1"}],
        "nics": [{"mac": MAC_MACHINE, "name": "eno1", "driver": "igb", "link": True, "speed_mbps": 1000}]})
    signed_in(browser, live)
    browser.get(f"{service.url}/console/images")
    assert "small" in text_of(browser, "#images")
    browser.save_screenshot(str(screens / "08-images.png"))
    browser.get(f"{service.url}/console/machines")
    listing = text_of(browser, "#machines")
    assert "rack1-n4" in listing and "ready" in listing and "64.0 GiB" in listing and "nvme0n1" in listing
    browser.save_screenshot(str(screens / "09-machines.png"))
    browser.find_element(By.LINK_TEXT, "rack1-n4").click()
    browser.find_element(By.ID, "deploy-machine").click()
    assert Select(browser.find_element(By.ID, "machine")).first_selected_option.get_attribute("value") == machine["id"]
    Select(browser.find_element(By.ID, "image")).select_by_value("small")
    browser.find_element(By.ID, "start").click()
    wait_for(browser, lambda d: text_of(d, "#state") == "pending", "the machine's new deployment")
    dep_id = browser.current_url.rsplit("/", 1)[1]
    assert api(live, "GET", f"/api/v1/deployments/{dep_id}").json()["machine"] == machine["id"]
    browser.get(f"{service.url}/console/machines/{machine['id']}")
    assert "deploying" in text_of(browser, "dl.facts") and dep_id in text_of(browser, "dl.facts")
    assert "16 × AMD EPYC 7302P" in text_of(browser, "#facts") and "Supermicro AS-1014S" in text_of(browser, "#facts")
    browser.save_screenshot(str(screens / "10-machine.png"))
    api(live, "DELETE", f"/api/v1/deployments/{dep_id}")

    signed_in(browser, live, token=read)  # a read token: the same pages, no action
    browser.get(f"{service.url}/console/deployments/{dep_id}")
    assert text_of(browser, "#state") == "cancelled" and not browser.find_elements(By.ID, "cancel")
    assert not browser.find_elements(By.LINK_TEXT, "Deploy")
