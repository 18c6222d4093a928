"""`metalstream image|token|serve` on the command line (real child processes)."""
from __future__ import annotations

import json

from conftest import run_cli
from fixtures_pxe import pxe_write_image


def test_image_and_token_commands(tmp_path):
    data = str(tmp_path / "data")
    manifest = pxe_write_image(tmp_path / "out", "demo")
    added = run_cli("image", "add", "--create", "--data-dir", data, str(manifest))
    assert added.returncode == 0, added.stderr
    assert "served at /images/demo.tar.zst" in added.stdout
    assert (tmp_path / "data" / "images" / "demo.tar.zst").read_bytes() == manifest.with_name("demo.tar.zst").read_bytes()
    again = run_cli("image", "add", "--data-dir", data, str(manifest))  # same image again: no change, no error
    assert again.returncode == 0
    listed = run_cli("image", "list", "--data-dir", data)
    assert listed.stdout.split("\t")[0] == "demo"
    shown = json.loads(run_cli("image", "show", "--data-dir", data, "demo").stdout)
    assert shown["manifest"]["name"] == "demo"
    token = run_cli("token", "create", "--data-dir", data, "--scope", "read", "--comment", "ui").stdout.strip()
    assert token.startswith("msa_") and len(token) > 50
    tokens = run_cli("token", "list", "--data-dir", data).stdout
    assert "\tread\tvalid\tui" in tokens and token.split("_", 2)[2] not in tokens
    assert run_cli("token", "revoke", "--data-dir", data, token.split("_")[1]).returncode == 0
    assert "\tread\trevoked\tui" in run_cli("token", "list", "--data-dir", data).stdout
    assert run_cli("token", "revoke", "--data-dir", data, "nope").returncode == 2
    deleted = run_cli("image", "delete", "--data-dir", data, "demo")
    assert deleted.returncode == 0 and not (tmp_path / "data" / "images" / "demo.tar.zst").exists()
    assert run_cli("image", "show", "--data-dir", data, "demo").returncode == 1


def test_image_add_bad_manifest_is_located_and_changes_nothing(tmp_path):
    data = str(tmp_path / "data")
    manifest = pxe_write_image(tmp_path / "out", "demo")
    content = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**content, "sha256": "f" * 64}))
    result = run_cli("image", "add", "--create", "--data-dir", data, str(manifest))
    assert result.returncode == 2
    assert f"{manifest}: sha256" in result.stderr and "Traceback" not in result.stderr
    assert run_cli("image", "list", "--data-dir", data).stdout == ""
    assert list((tmp_path / "data" / "images").iterdir()) == []
    manifest.write_text("{\n  broken")
    result = run_cli("image", "add", "--data-dir", data, str(manifest))
    assert result.returncode == 2 and f"{manifest}:2" in result.stderr


def test_serve_help_and_bad_options(tmp_path):
    helped = run_cli("serve", "--help")
    assert helped.returncode == 0 and "gunicorn" in helped.stdout and "--installer" in helped.stdout
    bad = run_cli("serve", "--data-dir", str(tmp_path), "--bind", "nonsense")
    assert bad.returncode == 2 and "--bind" in bad.stderr
    bad = run_cli("serve", "--data-dir", str(tmp_path), "--bind", "127.0.0.1:1", "--public-url", "http://x/\nboot")
    assert bad.returncode == 2 and "--public-url" in bad.stderr
    broken = tmp_path / "installer.json"
    broken.write_text('{"format": "metalstream-installer/1"}')
    bad = run_cli("serve", "--data-dir", str(tmp_path / "d"), "--bind", "127.0.0.1:1", "--installer", str(broken))
    assert bad.returncode == 2 and f"{broken}: name" in bad.stderr
