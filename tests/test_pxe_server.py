"""The real service: `metalstream serve` (gunicorn, 2 gthread workers) on a loopback port."""
from __future__ import annotations

import hashlib
import json
import threading
from concurrent.futures import ThreadPoolExecutor

import requests

CHUNK = 1 << 20


def _image(server, name: str) -> dict:
    return requests.get(f"{server.url}/api/v1/images/{name}", headers=server.admin, timeout=10).json()


def test_range_resume_reproduces_exact_bytes(pxe_server):
    image = _image(pxe_server, pxe_server.big_image)
    url = f"{pxe_server.url}/images/{pxe_server.big_image}.tar.zst"
    digest = hashlib.sha256()
    got = 0
    with requests.get(url, stream=True, timeout=30) as first:  # the connection "drops" after ~100 MiB
        assert first.status_code == 200 and first.headers["ETag"] == f'"{image["sha256"]}"'
        assert int(first.headers["Content-Length"]) == pxe_server.big_size
        for chunk in first.iter_content(CHUNK):
            digest.update(chunk)
            got += len(chunk)
            if got >= 100 * CHUNK + 12345:
                break
    headers = {"Range": f"bytes={got}-", "If-Range": first.headers["ETag"]}
    with requests.get(url, headers=headers, stream=True, timeout=30) as rest:
        assert rest.status_code == 206
        assert rest.headers["Content-Range"] == f"bytes {got}-{pxe_server.big_size - 1}/{pxe_server.big_size}"
        for chunk in rest.iter_content(CHUNK):
            digest.update(chunk)
            got += len(chunk)
    assert got == pxe_server.big_size
    assert digest.hexdigest() == image["sha256"]


def test_concurrent_downloads(pxe_server):
    small = _image(pxe_server, pxe_server.small_image)
    big = _image(pxe_server, pxe_server.big_image)
    expected_slice = None
    with open(pxe_server.data_dir / "images" / "big.tar.zst", "rb") as f:
        f.seek(64 << 20)
        expected_slice = f.read(8 << 20)

    def fetch_small(_):
        r = requests.get(f"{pxe_server.url}/images/small.tar.zst", timeout=30)
        return r.status_code, hashlib.sha256(r.content).hexdigest()

    def fetch_slice(_):
        r = requests.get(f"{pxe_server.url}/images/big.tar.zst", timeout=30,
                         headers={"Range": f"bytes={64 << 20}-{(72 << 20) - 1}", "If-Range": f'"{big["sha256"]}"'})
        return r.status_code, r.content == expected_slice

    with ThreadPoolExecutor(16) as pool:
        smalls = list(pool.map(fetch_small, range(16)))
        slices = list(pool.map(fetch_slice, range(16)))
    assert smalls == [(200, small["sha256"])] * 16
    assert slices == [(206, True)] * 16


def test_memory_stays_flat_while_serving_1gib(pxe_server):
    url = f"{pxe_server.url}/images/{pxe_server.big_image}.tar.zst"
    requests.get(url, headers={"Range": "bytes=0-1023"}, timeout=10)  # warm up every code path once
    baseline = pxe_server.rss_kib()
    peak = baseline
    done = threading.Event()

    def sample():
        nonlocal peak
        while not done.wait(0.05):
            peak = max(peak, pxe_server.rss_kib())

    sampler = threading.Thread(target=sample)
    sampler.start()
    total = 0
    try:
        with ThreadPoolExecutor(2) as pool:  # two full downloads at once, one per worker at least
            def download(_):
                n = 0
                with requests.get(url, stream=True, timeout=60) as r:
                    for chunk in r.iter_content(4 * CHUNK):
                        n += len(chunk)
                return n
            total = sum(pool.map(download, range(2)))
    finally:
        done.set()
        sampler.join()
    assert total == 2 * pxe_server.big_size
    growth_mib = (max(peak, pxe_server.rss_kib()) - baseline) / 1024
    print(f"service RSS: baseline {baseline / 1024:.1f} MiB, peak {peak / 1024:.1f} MiB, growth {growth_mib:.1f} MiB")
    assert growth_mib < 50, f"service RSS grew by {growth_mib:.1f} MiB while serving 2 GiB"


def test_100_concurrent_identical_posts_make_one_deployment(pxe_server):
    body = {"mac": "52:54:00:aa:00:01", "image": pxe_server.small_image, "hostname": "idem-1"}
    headers = {**pxe_server.admin, "Idempotency-Key": "inventory-run-42"}
    barrier = threading.Barrier(100)

    def post(_):
        barrier.wait()
        r = requests.post(f"{pxe_server.url}/api/v1/deployments", json=body, headers=headers, timeout=60)
        return r.status_code, r.json().get("id")

    with ThreadPoolExecutor(100) as pool:
        results = list(pool.map(post, range(100)))
    statuses = [status for status, _ in results]
    assert statuses.count(201) == 1 and statuses.count(200) == 99, statuses
    assert len({dep_id for _, dep_id in results}) == 1
    listed = requests.get(f"{pxe_server.url}/api/v1/deployments", params={"mac": body["mac"]},
                          headers=pxe_server.admin, timeout=10).json()["deployments"]
    assert len(listed) == 1


def test_concurrent_posts_without_key_never_make_two_open_deployments_for_one_mac(pxe_server):
    body = {"mac": "52:54:00:aa:00:02", "image": pxe_server.small_image}
    barrier = threading.Barrier(20)

    def post(i):
        barrier.wait()
        r = requests.post(f"{pxe_server.url}/api/v1/deployments", json={**body, "hostname": f"h{i}"},
                          headers=pxe_server.admin, timeout=60)
        return r.status_code

    with ThreadPoolExecutor(20) as pool:
        statuses = list(pool.map(post, range(20)))
    assert statuses.count(201) == 1 and statuses.count(409) == 19, statuses


def test_boot_flow_and_metrics_through_the_real_server(pxe_server):
    mac = "52:54:00:aa:00:03"
    created = requests.post(f"{pxe_server.url}/api/v1/deployments", json={"mac": mac, "image": "small"},
                            headers=pxe_server.admin, timeout=10).json()
    script = requests.get(f"{pxe_server.url}/boot/{mac.replace(':', '-')}.ipxe", timeout=10).text
    assert f"kernel {pxe_server.url}/installer/vmlinuz" in script
    token = script.split("metalstream.token=")[1].split()[0]
    plan = requests.get(f"{pxe_server.url}/api/v1/agent/plan", headers={"Authorization": f"Bearer {token}"},
                        timeout=10).json()
    assert plan["deployment_id"] == created["id"]
    assert requests.get(plan["image"]["url"], timeout=10).status_code == 200
    metrics = requests.get(f"{pxe_server.url}/metrics", timeout=10).text
    served = [line for line in metrics.splitlines() if line.startswith('metalstream_served_bytes_total{kind="image"}')]
    assert served and float(served[0].split()[-1]) > 0
    assert 'metalstream_deployments{state="installing"}' in metrics
    assert "metalstream_http_request_duration_seconds_bucket" in metrics
    doc = requests.get(f"{pxe_server.url}/api/v1/openapi.json", headers=pxe_server.admin, timeout=10).json()
    assert json.dumps(doc).count("/api/v1/agent/plan") == 1


def test_serve_tftp_hands_out_debian_ipxe(pxe_server, tmp_path):
    import tftpy
    out = tmp_path / "undionly.kpxe"
    tftpy.TftpClient("127.0.0.1", pxe_server.tftp_port).download("undionly.kpxe", str(out), timeout=2, retries=3)
    assert out.read_bytes() == open("/usr/lib/ipxe/undionly.kpxe", "rb").read()


def test_background_sweep_fails_a_silent_agent(pxe_server):
    """The workers' supervisor thread (not a request) fails a deployment whose agent stays silent (8 s here)."""
    import time

    from sqlalchemy import create_engine, select

    from pxe import db
    mac = "52:54:00:aa:00:04"
    dep = requests.post(f"{pxe_server.url}/api/v1/deployments", json={"mac": mac, "image": "small"},
                        headers=pxe_server.admin, timeout=10).json()
    assert "metalstream.token=" in requests.get(f"{pxe_server.url}/boot/{mac}.ipxe", timeout=10).text
    engine = create_engine(f"sqlite:///{pxe_server.data_dir / 'metalstream.db'}")
    try:
        deadline = time.monotonic() + 60
        while True:  # read the database directly: API reads would apply the timeout themselves
            with engine.connect() as conn:
                row = conn.execute(select(db.deployments.c.state, db.deployments.c.error)
                                   .where(db.deployments.c.id == dep["id"])).first()
            if row.state != "booting" or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    finally:
        engine.dispose()
    assert row.state == "failed" and "silent" in row.error
