"""The web console through Flask's test client: the session cookie, CSRF and Origin refusals, scopes,
no asset from another host, escaping of hostile values, and the pages' contents. (The browser tests
are tests/test_console_browser.py.)"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass

import pytest

from fixtures_pxe import PXE_MAC

ORIGIN = {"Origin": "http://localhost"}
OTHER_MAC = "52:54:00:12:34:99"
HOSTILE = '<script>alert("x")</script>'


@dataclass
class Console:
    app: object
    service: object
    admin_token: str
    read_token: str

    def client(self, token: str | None = None):
        client = self.app.test_client()
        if token is not None:
            response = client.post("/console/sign-in", data={"token": token}, headers=ORIGIN)
            assert response.status_code == 303, response.get_data(as_text=True)
        return client

    def api(self, method: str, path: str, **kwargs):
        return getattr(self.app.test_client(), method)(path, headers={"Authorization": f"Bearer {self.admin_token}"},
                                                       **kwargs)

    def pending(self, mac: str = PXE_MAC, **extra) -> dict:
        response = self.api("post", "/api/v1/deployments", json={"mac": mac, "image": "tiny", **extra})
        assert response.status_code == 201, response.get_json()
        return response.get_json()

    def agent_token(self, mac: str = PXE_MAC) -> dict:
        script = self.app.test_client().get(f"/boot/{mac}.ipxe").get_data(as_text=True)
        return {"Authorization": "Bearer " + script.split("metalstream.token=")[1].split()[0]}

    def state(self, dep_id: str) -> str:
        return self.api("get", f"/api/v1/deployments/{dep_id}").get_json()["state"]


@pytest.fixture
def console(tmp_path, pxe_installer, pxe_image_manifest) -> Console:
    from pxe import imagestore, tokens
    from pxe.app import create_app
    from pxe.config import ServiceConfig

    config = ServiceConfig(data_dir=tmp_path / "data", installer=pxe_installer, supervisor_interval=0,
                           public_url="http://10.0.2.2:8080", image_import_dirs=(tmp_path,))
    app = create_app(config)
    service = app.extensions["metalstream"]
    imagestore.register(service.engine, config.image_dir, pxe_image_manifest)
    yield Console(app, service, tokens.create_api_token(service.engine, "admin"),
                  tokens.create_api_token(service.engine, "read"))
    service.engine.dispose()


def csrf_of(page: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def set_cookie(response) -> str:
    [cookie] = [h for h in response.headers.getlist("Set-Cookie") if h.startswith("metalstream_console=")]
    return cookie


# --- signing in ----------------------------------------------------------------------------------------

def test_sign_in_sets_a_sealed_httponly_strict_cookie_that_never_holds_the_token(console):
    client = console.app.test_client()
    assert client.get("/console/deployments").headers["Location"] == "/console/sign-in?next=/console/deployments"
    response = client.post("/console/sign-in", data={"token": console.admin_token, "next": "/console/images"},
                           headers=ORIGIN)
    assert response.status_code == 303 and response.headers["Location"] == "/console/images"
    cookie = set_cookie(response)
    flags = [part.strip() for part in cookie.split(";")]
    assert "HttpOnly" in flags and "SameSite=Strict" in flags and "Path=/console/" in flags
    assert "Secure" not in flags  # plain http: a Secure cookie would never come back
    assert any(flag.startswith("Max-Age=") and 0 < int(flag[8:]) <= 12 * 3600 for flag in flags)
    value = cookie.split(";")[0].split("=", 1)[1]
    token_id, secret = console.admin_token.split("_", 2)[1:]
    assert secret not in value and token_id not in value and console.admin_token not in value
    assert client.get("/console/images").status_code == 200


def test_cookie_is_secure_over_https_and_next_never_leaves_the_console(console):
    client = console.app.test_client()
    response = client.post("/console/sign-in", base_url="https://localhost", headers={"Origin": "https://localhost"},
                           data={"token": console.read_token, "next": "//evil.example/console/"})
    assert "Secure" in [part.strip() for part in set_cookie(response).split(";")]
    assert response.headers["Location"] == "/console/deployments"


def test_a_wrong_token_signs_nobody_in(console):
    client = console.app.test_client()
    response = client.post("/console/sign-in", data={"token": console.admin_token[:-2] + "xx"}, headers=ORIGIN)
    assert response.status_code == 401 and "not a valid API token" in response.get_data(as_text=True)
    assert not response.headers.getlist("Set-Cookie")
    assert client.get("/console/deployments").status_code == 302
    assert client.get("/console/deployments/part").status_code == 401  # a live part is answered, not redirected


def test_repeated_wrong_tokens_block_the_client_as_on_the_api(console):
    console.service.config.auth_max_failures = 2
    client = console.app.test_client()
    for _ in range(2):
        assert client.post("/console/sign-in", data={"token": "msa_0_wrong"}, headers=ORIGIN).status_code == 401
    blocked = client.post("/console/sign-in", data={"token": console.admin_token}, headers=ORIGIN)
    assert blocked.status_code == 429 and int(blocked.headers["Retry-After"]) > 0
    assert not blocked.headers.getlist("Set-Cookie")
    assert console.app.test_client().get("/api/v1/images", headers={
        "Authorization": f"Bearer {console.admin_token}"}).status_code == 429


def test_sign_in_from_another_site_is_refused(console):
    client = console.app.test_client()
    response = client.post("/console/sign-in", data={"token": console.admin_token},
                           headers={"Origin": "http://evil.example"})
    assert response.status_code == 403 and not response.headers.getlist("Set-Cookie")


def test_sign_out_clears_the_cookie(console):
    client = console.client(console.admin_token)
    page = client.get("/console/deployments").get_data(as_text=True)
    response = client.post("/console/sign-out", data={"csrf_token": csrf_of(page)}, headers=ORIGIN)
    assert response.status_code == 303 and response.headers["Location"] == "/console/sign-in"
    assert "Max-Age=0" in set_cookie(response) or "Expires=Thu, 01 Jan 1970" in set_cookie(response)
    assert client.get("/console/deployments").status_code == 302


def test_an_expired_session_or_a_revoked_token_ends_the_session(console):
    from pxe import tokens
    from pxe.console import session

    client = console.app.test_client()
    token_id = tokens.api_token_id(console.admin_token)
    old = session.new_session(token_id, "admin", now=time.time() - session.SESSION_SECONDS - 1)
    client.set_cookie("metalstream_console", session.seal(console.service.secrets, old), path="/console/")
    assert client.get("/console/deployments").status_code == 302
    client.set_cookie("metalstream_console", "forged-" + "A" * 100, path="/console/")
    assert client.get("/console/deployments").status_code == 302

    client = console.client(console.admin_token)
    assert client.get("/console/deployments").status_code == 200
    tokens.revoke_api_token(console.service.engine, token_id)
    assert client.get("/console/deployments").status_code == 302


# --- CSRF, Origin and scope ----------------------------------------------------------------------------

@pytest.mark.parametrize("case", ["no csrf token", "wrong csrf token", "foreign origin", "no origin", "null origin"])
def test_a_cancel_without_the_sessions_csrf_token_or_from_elsewhere_is_refused(console, case):
    dep = console.pending()
    client = console.client(console.admin_token)
    csrf = csrf_of(client.get(f"/console/deployments/{dep['id']}").get_data(as_text=True))
    data, headers = {"csrf_token": csrf}, dict(ORIGIN)
    if case == "no csrf token":
        data = {}
    elif case == "wrong csrf token":
        data = {"csrf_token": csrf[:-3] + "abc"}
    elif case == "foreign origin":
        headers = {"Origin": "http://evil.example"}
    elif case == "no origin":
        headers = {}
    elif case == "null origin":
        headers = {"Origin": "null"}
    response = client.post(f"/console/deployments/{dep['id']}/cancel", data=data, headers=headers)
    assert response.status_code == 403, response.get_data(as_text=True)
    assert console.state(dep["id"]) == "pending"


def test_another_sessions_csrf_token_does_not_pass(console):
    dep = console.pending()
    mine, other = console.client(console.admin_token), console.client(console.admin_token)
    foreign = csrf_of(other.get("/console/deployments").get_data(as_text=True))
    response = mine.post(f"/console/deployments/{dep['id']}/cancel", data={"csrf_token": foreign}, headers=ORIGIN)
    assert response.status_code == 403 and console.state(dep["id"]) == "pending"


def test_a_cancel_with_the_token_from_the_page_cancels(console):
    dep = console.pending()
    client = console.client(console.admin_token)
    page = client.get(f"/console/deployments/{dep['id']}").get_data(as_text=True)
    assert 'id="cancel"' in page
    response = client.post(f"/console/deployments/{dep['id']}/cancel", data={"csrf_token": csrf_of(page)},
                           headers={"Referer": f"http://localhost/console/deployments/{dep['id']}"})
    assert response.status_code == 303 and response.headers["Location"] == f"/console/deployments/{dep['id']}"
    assert console.state(dep["id"]) == "cancelled"
    events = console.api("get", f"/api/v1/deployments/{dep['id']}").get_json()["events"]
    assert events[-1]["message"] == "cancelled through the web console"
    audit = console.api("get", "/api/v1/audit").get_json()
    assert any(e["action"] == "POST /console/deployments/<dep_id>/cancel" and e["target"] == dep["id"]
               and e["status"] == 303 for e in audit["entries"])


def test_a_forged_deploy_makes_no_deployment(console):
    client = console.client(console.admin_token)
    csrf = csrf_of(client.get("/console/deploy").get_data(as_text=True))
    for data, headers in (({"image": "tiny", "mac": PXE_MAC}, ORIGIN),
                          ({"image": "tiny", "mac": PXE_MAC, "csrf_token": csrf}, {"Origin": "https://localhost"})):
        assert client.post("/console/deploy", data=data, headers=headers).status_code == 403
    assert console.api("get", "/api/v1/deployments").get_json()["deployments"] == []


def test_a_read_token_sees_but_cannot_act(console):
    dep = console.pending()
    client = console.client(console.read_token)
    page = client.get(f"/console/deployments/{dep['id']}").get_data(as_text=True)
    assert dep["id"] in page and 'id="cancel"' not in page
    assert 'href="/console/deploy"' not in client.get("/console/deployments").get_data(as_text=True)
    csrf = csrf_of(page)  # the sign-out form still has one
    response = client.post(f"/console/deployments/{dep['id']}/cancel", data={"csrf_token": csrf}, headers=ORIGIN)
    assert response.status_code == 403 and "only look" in response.get_data(as_text=True)
    response = client.post("/console/deploy", data={"csrf_token": csrf, "image": "tiny", "mac": OTHER_MAC},
                           headers=ORIGIN)
    assert response.status_code == 403
    assert console.state(dep["id"]) == "pending" and len(console.api("get", "/api/v1/deployments").get_json()["deployments"]) == 1


# --- deploying -----------------------------------------------------------------------------------------

def test_deploy_a_mac_and_a_machine_from_the_form(console):
    client = console.client(console.admin_token)
    csrf = csrf_of(client.get("/console/deploy").get_data(as_text=True))
    response = client.post("/console/deploy", headers=ORIGIN,
                           data={"csrf_token": csrf, "image": "tiny", "mac": PXE_MAC, "hostname": "web-1"})
    assert response.status_code == 303
    dep_id = response.headers["Location"].rsplit("/", 1)[1]
    shown = console.api("get", f"/api/v1/deployments/{dep_id}").get_json()
    assert (shown["mac"], shown["image"], shown["hostname"], shown["state"]) == (PXE_MAC, "tiny", "web-1", "pending")

    machine = console.api("post", "/api/v1/machines", json={"name": "rack1-n2", "macs": [OTHER_MAC]}).get_json()
    page = client.get(f"/console/deploy?machine={machine['id']}").get_data(as_text=True)
    assert f'<option value="{machine["id"]}" selected>' in page
    response = client.post("/console/deploy", headers=ORIGIN,
                           data={"csrf_token": csrf, "image": "tiny", "machine": machine["id"], "mac": ""})
    assert response.status_code == 303
    shown = console.api("get", response.headers["Location"].replace("/console/", "/api/v1/")).get_json()
    assert shown["machine"] == machine["id"] and shown["mac"] == OTHER_MAC
    assert console.api("get", f"/api/v1/machines/{machine['id']}").get_json()["state"] == "deploying"


def test_a_bad_deploy_form_says_why_and_makes_nothing(console):
    client = console.client(console.admin_token)
    csrf = csrf_of(client.get("/console/deploy").get_data(as_text=True))
    for data, status, words in (({"image": "tiny", "mac": "52:54:00:zz"}, 400, "mac: "),
                                ({"mac": PXE_MAC}, 400, "image: choose an image"),
                                ({"image": "nope", "mac": PXE_MAC}, 404, "no image named"),
                                ({"image": "tiny"}, 400, "mac: ")):
        response = client.post("/console/deploy", data={"csrf_token": csrf, **data}, headers=ORIGIN)
        page = response.get_data(as_text=True)
        assert response.status_code == status and 'id="deploy-error"' in page and words in page, (data, page)
    assert console.api("get", "/api/v1/deployments").get_json()["deployments"] == []
    console.pending()
    response = client.post("/console/deploy", data={"csrf_token": csrf, "image": "tiny", "mac": PXE_MAC}, headers=ORIGIN)
    assert response.status_code == 409 and "already has an open deployment" in response.get_data(as_text=True)


# --- what the pages show -------------------------------------------------------------------------------

def _play_agent_to_failure(console, log: str, error: str) -> dict:
    dep = console.pending()
    agent = console.agent_token()
    client = console.app.test_client()
    start = time.time()
    for i, (phase, done) in enumerate((("partition", None), ("stream", 0), ("stream", 400), ("stream", 600))):
        event = {"phase": phase, "message": f"{phase} {done}", "bytes_done": done,
                 "bytes_total": 1000 if done is not None else None, "time": start + i}
        assert client.post("/api/v1/agent/events", json=event, headers=agent).status_code == 200
    failure = {"success": False, "phase": "stream", "error": error, "log": log, "time": start + 5}
    assert client.post("/api/v1/agent/result", json=failure, headers=agent).status_code == 200
    return dep


def test_deployment_page_shows_timeline_progress_and_the_failing_line(console):
    log = "2026-01-01 10:00:00 metalstream.agent INFO streaming\n" \
          "2026-01-01 10:00:09 metalstream.agent ERROR install failed in phase stream: sha256 mismatch\n"
    dep = _play_agent_to_failure(console, log, "sha256 mismatch")
    client = console.client(console.read_token)
    page = client.get(f"/console/deployments/{dep['id']}").get_data(as_text=True)
    assert 'id="failure">Failed: sha256 mismatch' in page
    assert '<progress id="progress" max="100" value="60.0">' in page
    failing = re.findall(r'<span class="line failing" data-line="(\d+)">([^<]*)</span>', page)
    assert failing == [("2", "2026-01-01 10:00:09 metalstream.agent ERROR install failed in phase stream: sha256 mismatch")]
    steps = re.findall(r'<span class="state (\w+)">(\w+)</span></td>\s*<td>([^<]*)</td>', page)
    labels = [label for _, label, _ in steps]
    assert labels[:2] == ["pending", "booting"] and labels[-3:] == ["partition", "stream", "failed"]
    assert dict((label, took) for _, label, took in steps)["partition"] == "1 s"  # agent times: partition → stream
    assert 'id="rate">300 B/s' in page  # 0 → 600 bytes in 2 s of agent time
    assert re.search(r'class="when" data-time="[\d.]+">\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC<', page)  # without script
    part = client.get(f"/console/deployments/{dep['id']}/part")
    assert part.headers.get("X-Console-Final") == "1" and 'id="failure"' in part.get_data(as_text=True)
    assert client.get(f"/console/deployments/{dep['id']}/log").get_data(as_text=True) == log


def test_deployments_list_filters_and_pages(console):
    from pxe.console import views

    for i in range(views.PAGE_SIZE + 2):
        dep = console.pending(mac=f"52:54:00:00:01:{i:02x}")
        if i % 2:
            console.api("delete", f"/api/v1/deployments/{dep['id']}")
    client = console.client(console.read_token)
    first = client.get("/console/deployments").get_data(as_text=True)
    assert first.count("<tr data-id=") == views.PAGE_SIZE and 'id="older"' in first and 'id="newer"' not in first
    second = client.get("/console/deployments?page=2").get_data(as_text=True)
    assert second.count("<tr data-id=") == 2 and 'id="newer"' in second
    cancelled = client.get("/console/deployments/part?state=cancelled").get_data(as_text=True)
    assert cancelled.count('data-state="cancelled"') == cancelled.count("<tr data-id=") == (views.PAGE_SIZE + 2) // 2
    one = client.get("/console/deployments?mac=52-54-00-00-01-03").get_data(as_text=True)
    assert one.count("<tr data-id=") == 1 and "52:54:00:00:01:03" in one
    bad = client.get("/console/deployments?state=sleeping")
    assert bad.status_code == 400 and "state" in bad.get_data(as_text=True)


def test_machines_pages_show_state_power_facts_and_last_deployment(console):
    from pxe import machines

    machine = console.api("post", "/api/v1/machines", json={"name": "n1", "macs": [PXE_MAC], "tags": ["rack1"]}).get_json()
    machines.set_facts(console.service.engine, machine["id"], {
        "cpus": {"count": 8, "model": "Xeon"}, "memory_mib": 16384, "firmware": "uefi",
        "dmi": {"vendor": "Acme", "product": "R1", "serial": "SN1"},
        "disks": [{"name": "sda", "size_bytes": 500 << 30, "model": "SSD", "serial": "D1", "wwn": None,
                   "rotational": False, "by_path": "pci-0000:00:1f.2-ata-1"}],
        "nics": [{"mac": PXE_MAC, "name": "eno1", "driver": "e1000e", "link": True, "speed_mbps": 1000}]})
    dep = console.pending()
    client = console.client(console.admin_token)
    listing = client.get("/console/machines").get_data(as_text=True)
    assert "n1" in listing and "deploying" in listing and "16.0 GiB" in listing and "500.0 GiB" in listing
    assert dep["id"][:8] in listing and "manual" in listing
    page = client.get(f"/console/machines/{machine['id']}").get_data(as_text=True)
    assert "8 × Xeon" in page and "Acme R1" in page and "eno1" in page and dep["id"] in page
    assert 'id="deploy-machine"' not in page  # it has an open deployment
    assert 'id="power-on"' not in page  # a manual machine has no power control


def test_power_on_a_machine_without_a_bmc_says_so(console):
    machine = console.api("post", "/api/v1/machines", json={"name": "n2", "macs": [OTHER_MAC]}).get_json()
    client = console.client(console.admin_token)
    csrf = csrf_of(client.get(f"/console/machines/{machine['id']}").get_data(as_text=True))
    response = client.post(f"/console/machines/{machine['id']}/power", data={"csrf_token": csrf, "action": "on"},
                           headers=ORIGIN)
    assert response.status_code == 409
    response = client.post(f"/console/machines/{machine['id']}/power", data={"csrf_token": csrf, "action": "explode"},
                           headers=ORIGIN)
    assert response.status_code == 400 and "action" in response.get_data(as_text=True)


def test_hostile_values_are_escaped_everywhere(console):
    from pxe import machines

    dep = _play_agent_to_failure(console, f"line one\nERROR {HOSTILE}\n", f"disk {HOSTILE} gone")
    machine = console.api("post", "/api/v1/machines", json={"name": "evil", "macs": [OTHER_MAC]}).get_json()
    machines.set_facts(console.service.engine, machine["id"], {
        "cpus": {"count": 1, "model": HOSTILE}, "memory_mib": 1024, "firmware": "bios",
        "dmi": {"vendor": HOSTILE, "product": "<b>p</b>", "serial": "\"'><img src=x onerror=alert(1)>"},
        "disks": [], "nics": []})
    client = console.client(console.admin_token)
    for path in (f"/console/deployments/{dep['id']}", f"/console/deployments/{dep['id']}/part", "/console/deployments",
                 "/console/machines", f"/console/machines/{machine['id']}", f"/console/machines/{machine['id']}/part"):
        page = client.get(path).get_data(as_text=True)
        assert "<script>alert" not in page and "<img src=x" not in page and "<b>p</b>" not in page, path
    page = client.get(f"/console/deployments/{dep['id']}").get_data(as_text=True)
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page
    assert client.get(f"/console/machines/{machine['id']}").get_data(as_text=True).count("&lt;script&gt;") >= 2


def test_images_page_shows_what_the_manifest_says(console):
    page = console.client(console.read_token).get("/console/images").get_data(as_text=True)
    row = re.search(r"<tr>\s*<td>tiny</td>(.*?)</tr>", page, re.S).group(1)
    cells = [re.sub(r"<[^>]+>", "", cell).strip() for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
    assert cells[:3] == ["test bookworm", "debian", "x86_64"] and cells[4] == "10.0 KiB", cells


def test_no_page_loads_anything_from_another_host(console):
    dep = _play_agent_to_failure(console, "log\n", "boom")
    machine = console.api("post", "/api/v1/machines", json={"name": "n3", "macs": [OTHER_MAC]}).get_json()
    anonymous = console.app.test_client()
    pages = [anonymous.get("/console/sign-in")]
    client = console.client(console.admin_token)
    pages += [client.get(path) for path in (
        "/console/deployments", f"/console/deployments/{dep['id']}", "/console/deploy", "/console/images",
        "/console/machines", f"/console/machines/{machine['id']}", "/console/deployments/nope")]
    pages += [client.get("/console/static/console.js"), client.get("/console/static/console.css")]
    for response in pages:
        text = response.get_data(as_text=True)
        assert not re.search(r"(?i)(https?:)?//[a-z0-9]", re.sub(r"<!--.*?-->", "", text)), (response.request.path, text)
        for url in re.findall(r'(?:src|href|action)="([^"]*)"', text):
            assert url.startswith("/console/") or url.startswith("?"), (response.request.path, url)
        if response.mimetype == "text/html":
            policy = response.headers["Content-Security-Policy"]
            assert "default-src 'none'" in policy and "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert pages[-3].status_code == 404


def test_static_assets_are_in_the_package_data():
    import tomllib
    from pathlib import Path

    import pxe.console

    package = Path(pxe.console.__file__).parent
    patterns = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["*"]
    shipped = {p for pattern in patterns for p in package.glob(pattern) if p.is_file()}
    wanted = {p for p in package.rglob("*") if p.is_file() and p.suffix in (".html", ".js", ".css")}
    assert wanted and wanted <= shipped, sorted(str(p) for p in wanted - shipped)


def test_timeline_steps_rate_and_failing_lines():
    from pxe.console import timeline

    events = [{"time": 100.0, "state": "pending", "phase": None, "message": "created", "bytes_done": None, "bytes_total": None},
              {"time": 110.0, "state": "booting", "phase": None, "message": "served", "bytes_done": None, "bytes_total": None},
              {"time": 130.0, "state": "installing", "phase": "stream", "message": "s", "bytes_done": 0, "bytes_total": 100},
              {"time": 134.0, "state": "installing", "phase": "stream", "message": "s", "bytes_done": 80, "bytes_total": 100}]
    open_dep = {"state": "installing", "events": events, "bytes_done": 80, "bytes_total": 100}
    steps = timeline.steps(open_dep, now=140.0)
    assert [(s.label, s.seconds, s.running) for s in steps] == [("pending", 10.0, False), ("booting", 20.0, False),
                                                                ("stream", 10.0, True)]
    assert steps[-1].messages == ["s"]
    assert timeline.stream_rate(open_dep) == 20.0 and timeline.percent(open_dep) == 80.0
    closed = timeline.steps({"state": "failed", "events": events}, now=500.0)
    assert closed[-1].seconds is None and not closed[-1].running
    lines, skipped = timeline.log_lines("a\nb boom here\nc\n", "boom here\nmore", limit=2)
    assert skipped == 1 and [(l.number, l.failing) for l in lines] == [(2, True), (3, False)]
    assert timeline.human_seconds(3725) == "1 h 02 min" and timeline.human_bytes(1536) == "1.5 KiB"


def test_power_on_off_and_cycle_from_the_machine_page(console, monkeypatch):
    from power_stub import RedfishStub

    from pxe import machines
    from pxe.power import guard

    monkeypatch.setattr(guard, "BACKOFF_BASE", 0.01)
    with RedfishStub(password="pw-console-1") as bmc:
        machine = machines.create(console.service.engine, console.service.secrets, name="bmc1", macs=[OTHER_MAC],
                                  bmc={"driver": "redfish", "address": bmc.url, "username": "admin",
                                       "password": "pw-console-1"})
        client = console.client(console.admin_token)
        page = client.get(f"/console/machines/{machine['id']}").get_data(as_text=True)
        assert all(f'id="power-{action}"' in page for action in ("on", "off", "cycle"))
        csrf = csrf_of(page)
        for action, state in (("on", "on"), ("cycle", "on"), ("off", "off")):
            response = client.post(f"/console/machines/{machine['id']}/power", headers=ORIGIN,
                                   data={"csrf_token": csrf, "action": action})
            assert response.status_code == 303, response.get_data(as_text=True)
            shown = client.get(response.headers["Location"]).get_data(as_text=True)
            assert 'id="notice"' in shown and f'<span class="power {state}">{state}</span>' in shown
        assert [body.get("ResetType") for _, body in bmc.actions()][:2] == ["On", "ForceRestart"]
        assert len(bmc.actions()) == 3
        forged = client.post(f"/console/machines/{machine['id']}/power", data={"action": "on"}, headers=ORIGIN)
        assert forged.status_code == 403 and len(bmc.actions()) == 3  # no CSRF token: the BMC was never called
        bmc.fail_with = (500, "Internal controller fault: <fan> bus hung")
        failed = client.post(f"/console/machines/{machine['id']}/power", headers=ORIGIN,
                             data={"csrf_token": csrf, "action": "on"})
        assert failed.status_code == 502
        assert "HTTP 500: Internal controller fault: &lt;fan&gt; bus hung" in failed.get_data(as_text=True)
        page = client.get(f"/console/machines/{machine['id']}").get_data(as_text=True)
        assert '<span class="error">Redfish ' in page and "&lt;fan&gt; bus hung" in page  # the machine's power error
