"""The `metalstream` command line: help, version, exit codes."""
from conftest import run_cli


def test_version_prints_package_version():
    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("metalstream, version ")


def test_help_lists_every_component_command():
    result = run_cli("--help")
    assert result.returncode == 0
    for command in ("ks", "build", "serve", "image", "token", "agent", "install"):
        assert f"  {command} " in result.stdout, command


def test_every_subcommand_has_help():
    listing = run_cli("--help").stdout.split("Commands:")[1]
    names = [line.split()[0] for line in listing.strip().splitlines() if line.startswith("  ") and line.split()]
    for name in names:
        result = run_cli(name, "--help")
        assert result.returncode == 0, (name, result.stderr)
        assert "Usage:" in result.stdout


def test_unknown_command_is_bad_input():
    result = run_cli("no-such-command")
    assert result.returncode == 2
    assert "No such command" in result.stderr
    assert "Traceback" not in result.stderr
