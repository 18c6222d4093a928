"""Image mirror rules (`serve --image-mirror CIDR=URL`): parsing, and the plan's image URLs per agent address."""
from __future__ import annotations

import json

import pytest

from metalstream.contracts.plan import Plan
from metalstream.errors import BadInput
from pxe.mirrors import parse_mirror_rule

from fixtures_pxe import PXE_MAC

SERVICE = "http://10.0.2.2:8080"
RULES = ("10.1.2.0/24=http://cache-rack2:8080", "10.1.0.0/16=http://mirror.site-a/metalstream/",
         "subnet:fd00:1::/64=https://[fd00:1::5]:8443")


@pytest.mark.parametrize("text, subnet, base_url", [
    ("10.1.2.0/24=http://cache-rack2:8080", "10.1.2.0/24", "http://cache-rack2:8080"),
    ("subnet:10.0.0.0/8=https://mirror/ms/", "10.0.0.0/8", "https://mirror/ms"),
    (" 192.0.2.7/32 = http://198.51.100.1", "192.0.2.7/32", "http://198.51.100.1"),
    ("fd00:1::/64=http://[fd00:1::5]:8080", "fd00:1::/64", "http://[fd00:1::5]:8080"),
])
def test_rules_parse(text, subnet, base_url):
    rule = parse_mirror_rule(text)
    assert (str(rule.subnet), rule.base_url) == (subnet, base_url)
    assert parse_mirror_rule(str(rule)) == rule


@pytest.mark.parametrize("text, message", [
    ("", "must not be empty"),
    ("10.1.2.0/24", "expected CIDR=URL"),
    ("10.1.2.1/24=http://cache", "has host bits set"),
    ("rack2=http://cache", "not a subnet in CIDR notation"),
    ("10.1.2.0/24=cache:8080", "must be an http"),
    ("10.1.2.0/24=ftp://cache/images", "must be an http"),
    ("10.1.2.0/24=http://", "must be an http"),
    ("10.1.2.0/24=http://cache/?x=1", "no query"),
    ("10.1.2.0/24=http://cache/#top", "no query"),
    ("10.1.2.0/24=http://cache/my images", "spaces"),
    ("10.1.2.0/24=http://ops:secret@cache", "no credentials"),
    ("10.1.2.0/24=http://cache:99999", "bad port"),
    ("10.1.2.0/24=http://cache\n", "control character"),
    ("tag:gpu=http://cache", "arrive with machines"),
])
def test_bad_rules_are_refused_at_the_option(text, message):
    with pytest.raises(BadInput, match=message) as info:
        parse_mirror_rule(text)
    assert info.value.location == "--image-mirror"


def test_the_config_refuses_a_bad_rule_and_keeps_good_ones_as_text(tmp_path):
    from pxe.config import ServiceConfig
    from pxe.server import _boot_listener_config

    with pytest.raises(BadInput) as info:
        ServiceConfig(data_dir=tmp_path, image_mirrors=("10.0.0.0/8=http://ok", "10.0.0.1/8=http://bad"))
    assert info.value.location == "--image-mirror"
    config = ServiceConfig(data_dir=tmp_path, image_mirrors=RULES)
    assert config.image_mirrors == ("10.1.2.0/24=http://cache-rack2:8080",
                                    "10.1.0.0/16=http://mirror.site-a/metalstream",
                                    "fd00:1::/64=https://[fd00:1::5]:8443")
    # The plain-HTTP boot listener gets the configuration as JSON: the rules survive the trip.
    assert ServiceConfig(**_boot_listener_config(config)).mirror_rules == config.mirror_rules


@pytest.fixture
def mirrored(tmp_path, pxe_installer, pxe_image_manifest):
    """A service with the mirror RULES behind Flask's test client, image `tiny` registered and a pending
    deployment; yields (client, agent token, image record)."""
    from pxe import imagestore, tokens
    from pxe.app import create_app
    from pxe.config import ServiceConfig

    config = ServiceConfig(data_dir=tmp_path / "data", installer=pxe_installer, supervisor_interval=0,
                           public_url=SERVICE, image_mirrors=RULES)
    app = create_app(config)
    service = app.extensions["metalstream"]
    image = imagestore.register(service.engine, config.image_dir, pxe_image_manifest)
    admin = {"Authorization": "Bearer " + tokens.create_api_token(service.engine, "admin")}
    client = app.test_client()
    created = client.post("/api/v1/deployments", json={"mac": PXE_MAC, "image": "tiny"}, headers=admin)
    assert created.status_code == 201, created.get_json()
    script = client.get(f"/boot/{PXE_MAC}.ipxe").get_data(as_text=True)
    token = script.split("metalstream.token=")[1].split()[0]
    yield client, token, image
    service.engine.dispose()


def _plan_from(client, token: str, address: str) -> dict:
    response = client.get("/api/v1/agent/plan", headers={"Authorization": f"Bearer {token}"},
                          environ_base={"REMOTE_ADDR": address})
    assert response.status_code == 200, response.get_json()
    return response.get_json()


@pytest.mark.parametrize("address, mirrors", [
    ("10.1.2.7", ["http://cache-rack2:8080", "http://mirror.site-a/metalstream"]),  # both rules, in their order
    ("::ffff:10.1.2.7", ["http://cache-rack2:8080", "http://mirror.site-a/metalstream"]),  # dual-stack socket
    ("10.1.9.9", ["http://mirror.site-a/metalstream"]),
    ("fd00:1::7", ["https://[fd00:1::5]:8443"]),
    ("192.0.2.5", []),
    ("fd00:2::7", []),
])
def test_the_plan_lists_matching_mirrors_first_and_the_service_last(mirrored, address, mirrors):
    client, token, image = mirrored
    plan = _plan_from(client, token, address)
    own = f"{SERVICE}/images/tiny.tar.zst"
    expected = [f"{base}/images/tiny.tar.zst?sha256={image['sha256']}" for base in mirrors] + [own]
    parsed = Plan.from_json(plan)  # the agent's reader takes it
    assert parsed.image.urls == tuple(expected) and parsed.image.url == expected[0]
    assert plan["image"]["url"] == expected[0]
    if mirrors:
        assert plan["image"]["urls"] == expected
    else:  # a single source: exactly the document a 1.0 agent reads
        assert "urls" not in plan["image"]


def test_without_rules_the_plan_has_the_service_url_only(pxe_env):
    pxe_env.pending()
    plan = _plan_from(pxe_env.client, pxe_env.boot_token(), "10.1.2.7")
    assert plan["image"]["url"] == f"{SERVICE}/images/tiny.tar.zst" and "urls" not in plan["image"]
    assert json.loads(json.dumps(plan)) == Plan.from_json(plan).to_json()
