"""`metalstream ks`: lint, split and render kickstarts."""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict
from pathlib import Path

import click

from metalstream.errors import EXIT_BAD_INPUT, EXIT_OK

from .kickstart import SYNTAX_NAME, KickstartError, lint_kickstart, parse_kickstart
from .templating import parse_vars, render_template

VAR_OPTION = click.option("--var", "var_pairs", multiple=True, metavar="NAME=VALUE",
                          help="Template variable for the kickstart (repeatable).")


@click.group("ks")
def ks() -> None:
    """Lint, split and render kickstarts.

    Kickstarts are Jinja2 templates in pykickstart syntax (pinned version shown by `ks lint --help`),
    with an `%addon org_metalstream_image` section naming the distribution. See kickstarts/README.md.
    """


@ks.command("lint", help=f"""Check kickstarts; print every problem as FILE:LINE: severity: message.

Validates with pykickstart ({SYNTAX_NAME} syntax) and metalstream's own rules. Commands the pipeline does
not support are warnings. Exit 0 when there is no error (warnings alone pass unless --strict),
2 when any kickstart has an error. --json prints the build and deploy specs of each valid kickstart.""")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--strict", is_flag=True, help="Treat warnings (unsupported commands) as errors.")
@click.option("--json", "as_json", is_flag=True, help="Print {build, deploy, warnings} as JSON on stdout.")
@VAR_OPTION
def lint(files: tuple[str, ...], strict: bool, as_json: bool, var_pairs: tuple[str, ...]) -> int:
    variables = parse_vars(var_pairs)
    failed = False
    documents = []
    for file in files:
        diagnostics = lint_kickstart(file, strict=strict, variables=variables)
        for diagnostic in diagnostics:
            click.echo(str(diagnostic), err=True)
        errors = sum(d.severity == "error" for d in diagnostics)
        warnings = len(diagnostics) - errors
        click.echo(f"{file}: {'FAILED' if errors else 'ok'} ({errors} error(s), {warnings} warning(s))", err=True)
        failed = failed or errors > 0
        if as_json and not errors:
            documents.append(_document(parse_kickstart(file, variables=variables)))
    if as_json and documents:
        click.echo(json.dumps(documents[0] if len(files) == 1 else documents, indent=2))
    return EXIT_BAD_INPUT if failed else EXIT_OK


@ks.command("split", help="""Print the build and deploy specs of one kickstart as JSON (exit 2 if it is invalid).

Same as `ks lint --json FILE`, for scripts: problems go to stderr as FILE:LINE: messages.""")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--strict", is_flag=True, help="Treat warnings (unsupported commands) as errors.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write the JSON here instead of stdout.")
@VAR_OPTION
def split(file: str, strict: bool, output: str | None, var_pairs: tuple[str, ...]) -> int:
    try:
        result = parse_kickstart(file, variables=parse_vars(var_pairs), strict=strict)
    except KickstartError as exc:
        for diagnostic in exc.diagnostics:
            click.echo(str(diagnostic), err=True)
        return EXIT_BAD_INPUT
    for diagnostic in result.warnings:
        click.echo(str(diagnostic), err=True)
    _emit(json.dumps(_document(result), indent=2) + "\n", output)
    return EXIT_OK


@ks.command("render", help="""Render a kickstart template with per-host values.

Every `{{ name }}` must be given with --var name=value: an undefined variable is an error located at
its line (exit 2), never an empty string. Writes to stdout, or atomically to -o FILE.""")
@click.argument("file", type=click.Path(dir_okay=False))
@VAR_OPTION
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write the rendered kickstart here.")
def render(file: str, var_pairs: tuple[str, ...], output: str | None) -> int:
    _emit(render_template(file, parse_vars(var_pairs)), output)
    return EXIT_OK


def _document(result) -> dict:
    return {"source": result.source, "sha256": result.sha256, "build": result.build.to_dict(),
            "deploy": result.deploy.to_dict(), "warnings": [asdict(w) for w in result.warnings]}


def _emit(text: str, output: str | None) -> None:
    if output is None:
        click.echo(text, nl=False)
        return
    target = Path(output)
    fd, tmp = tempfile.mkstemp(dir=target.parent or Path("."), prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    click.echo(f"wrote {target}", err=True)


COMMANDS = [ks]
