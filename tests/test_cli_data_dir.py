"""The local admin commands (`image`, `token` on a data directory) refuse one that holds no metalstream
database unless told to --create it, and list as JSON with --json (real child processes)."""
from __future__ import annotations

import json

import pytest

from conftest import run_cli
from fixtures_pxe import pxe_write_image


@pytest.mark.parametrize("command", [("image", "list"), ("image", "show", "x"), ("image", "delete", "x"),
                                     ("token", "create"), ("token", "list"), ("token", "revoke", "x")])
def test_a_data_directory_without_a_database_is_refused_and_left_alone(tmp_path, command):
    typo = tmp_path / "srv" / "metalstraem"
    result = run_cli(*command, "--data-dir", str(typo))
    assert result.returncode == 2, result
    assert (f"--data-dir: {typo} holds no metalstream database; check the path (a new service starts with "
            "`metalstream serve`), or add --create to make a new, empty one") in result.stderr
    assert "Traceback" not in result.stderr and not typo.exists()


def test_an_existing_directory_without_a_database_is_refused_too(tmp_path):
    (tmp_path / "data").mkdir()
    manifest = pxe_write_image(tmp_path / "out", "demo")
    result = run_cli("image", "add", "--data-dir", str(tmp_path / "data"), str(manifest))
    assert result.returncode == 2 and "holds no metalstream database" in result.stderr
    assert list((tmp_path / "data").iterdir()) == []


def test_create_makes_the_database_then_commands_work_without_it(tmp_path):
    data = str(tmp_path / "data")
    token = run_cli("token", "create", "--create", "--data-dir", data, "--comment", "first").stdout.strip()
    assert token.startswith("msa_") and (tmp_path / "data" / "metalstream.db").is_file()
    manifest = pxe_write_image(tmp_path / "out", "demo")
    assert run_cli("image", "add", "--data-dir", data, str(manifest)).returncode == 0
    images = json.loads(run_cli("image", "list", "--json", "--data-dir", data).stdout)
    shown = json.loads(run_cli("image", "show", "demo", "--data-dir", data).stdout)
    assert images == [shown] and shown["name"] == "demo" and shown["size"] > 0
    tokens = json.loads(run_cli("token", "list", "--json", "--data-dir", data).stdout)
    assert [(t["id"], t["scope"], t["revoked"], t["comment"]) for t in tokens] == [
        (token.split("_")[1], "admin", False, "first")]
    assert token.split("_", 2)[2] not in json.dumps(tokens)  # the secret is never listed


def test_an_empty_database_given_with_db_is_refused(tmp_path):
    empty = tmp_path / "other.db"
    empty.write_bytes(b"")  # an SQLite file that exists but holds no metalstream schema
    result = run_cli("token", "list", "--data-dir", str(tmp_path / "data"), "--db", f"sqlite:///{empty}")
    assert result.returncode == 2
    assert f"--db: sqlite:///{empty} holds no metalstream database" in result.stderr
