"""Placeholders for subcommands whose issue has not landed: they explain, then fail with exit 1."""
from __future__ import annotations

import click

from .errors import NotImplementedYet


def placeholder(name: str, summary: str, issue: int) -> click.Command:
    """A command that shows `summary` in --help and refuses to run until issue #`issue` lands."""

    @click.command(name, help=f"{summary}\n\nNot available yet: arrives with issue #{issue}.",
                   context_settings={"ignore_unknown_options": True})
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def command(args: tuple[str, ...]) -> None:
        raise NotImplementedYet(f"`metalstream {name}` is not implemented yet (issue #{issue})")

    return command
