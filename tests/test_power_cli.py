"""`metalstream serve`'s power options (real child processes)."""
from __future__ import annotations

from conftest import run_cli


def test_serve_has_the_power_options_and_refuses_bad_values(tmp_path):
    helped = run_cli("serve", "--help")
    assert helped.returncode == 0
    for option in ("--bmc-timeout", "--bmc-retries", "--bmc-concurrency", "--power-refresh-interval",
                   "--boot-timeout"):
        assert option in helped.stdout
    for option, value in (("--bmc-retries", "0"), ("--bmc-concurrency", "0"), ("--bmc-timeout", "0.5"),
                          ("--power-refresh-interval", "-1"), ("--boot-timeout", "soon")):
        bad = run_cli("serve", "--data-dir", str(tmp_path), "--bind", "127.0.0.1:1", option, value)
        assert bad.returncode == 2 and option in bad.stderr, (option, bad.stderr)
