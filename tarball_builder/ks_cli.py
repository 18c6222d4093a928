"""`metalstream ks`: lint, split and render kickstarts."""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict
from pathlib import Path

import click

from metalstream.errors import EXIT_BAD_INPUT, EXIT_OK, BadInput

from .kickstart import SYNTAX_NAME, KickstartError, analyse_kickstart, as_strict, parse_kickstart
from .kickstart.storage_summary import storage_lines
from .templating import TEMPLATE_SUFFIX, is_template, parse_vars

VAR_OPTION = click.option("--var", "var_pairs", multiple=True, metavar="NAME=VALUE",
                          help="Template variable (repeatable); only for templates (*.j2, or --template).")
TEMPLATE_OPTION = click.option("--template", is_flag=True,
                               help="Render every file as a Jinja2 template, not only files named *.j2.")
DISTRIBUTION_HELP = ("The distribution comes from, first that says: --family/--release, the kickstart's "
                     "`%addon org_metalstream_image`, the `url`/`repo` lines (a /releases/N/ path: rpm N; "
                     "$releasever, a mirrorlist or metalink: rpm; an archive root ending in /debian: debian). "
                     "A flag that differs from the add-on is a warning naming both.")
FAMILY_OPTION = click.option("--family", type=click.Choice(["debian", "rpm"]), default=None,
                             help="Distribution family to build (wins over the kickstart's add-on).")
RELEASE_OPTION = click.option("--release", default=None, metavar="RELEASE",
                              help="Debian suite (bookworm) or RPM releasever (40); wins over the add-on.")


@click.group("ks")
def ks() -> None:
    """Lint, split and render kickstarts.

    Kickstarts are in pykickstart syntax (pinned version shown by `ks lint --help`). The distribution
    family and release come from --family/--release, an `%addon org_metalstream_image` section, or the
    repository URLs. Files named *.j2 are Jinja2 templates (per-host values with --var); other files are
    never rendered. See kickstarts/README.md.
    """


@ks.command("lint", help=f"""Check kickstarts; print every problem as FILE:LINE: severity: message.

Validates with pykickstart ({SYNTAX_NAME} syntax) and metalstream's own rules. What the pipeline
ignores is a warning, and each file's summary lists every ignored command and option and, one
`FILE: storage:` line each, the storage stacks (RAID, LUKS, LVM, btrfs), %pre scripts and %includes read
at deploy time. Exit 0 when there
is no error (warnings alone pass unless --strict), 2 when any kickstart has an error. --json prints the
build and deploy specs of each valid kickstart.

{DISTRIBUTION_HELP}""")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--strict", is_flag=True, help="Treat warnings (unsupported commands) as errors.")
@click.option("--json", "as_json", is_flag=True, help="Print {build, deploy, warnings, ignored} as JSON on stdout.")
@VAR_OPTION
@TEMPLATE_OPTION
@FAMILY_OPTION
@RELEASE_OPTION
def lint(files: tuple[str, ...], strict: bool, as_json: bool, var_pairs: tuple[str, ...], template: bool,
         family: str | None, release: str | None) -> int:
    variables = parse_vars(var_pairs)
    failed = False
    documents = []
    for file in files:
        split, diagnostics = analyse_kickstart(file, variables=variables, template=template, family=family,
                                               release=release)
        shown = [as_strict(d) for d in diagnostics] if strict else diagnostics
        for diagnostic in shown:
            click.echo(str(diagnostic), err=True)
        errors = sum(d.severity == "error" for d in shown)
        warnings = sum(d.severity == "warning" for d in shown)
        click.echo(f"{file}: {'FAILED' if errors else 'ok'} ({errors} error(s), {warnings} warning(s))", err=True)
        ignored = ignored_items(diagnostics)
        if ignored:
            click.echo(f"{file}: ignored: {', '.join(ignored)}", err=True)
        for line in storage_lines(split.deploy) if split is not None else []:
            click.echo(f"{file}: storage: {line}", err=True)
        failed = failed or errors > 0
        if as_json and not errors and split is not None:
            documents.append(_document(split))
    if as_json and documents:
        click.echo(json.dumps(documents[0] if len(files) == 1 else documents, indent=2))
    return EXIT_BAD_INPUT if failed else EXIT_OK


@ks.command("split", help=f"""Print the build and deploy specs of one kickstart as JSON (exit 2 if it is invalid).

Same as `ks lint --json FILE`, for scripts: problems go to stderr as FILE:LINE: messages.

{DISTRIBUTION_HELP}""")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--strict", is_flag=True, help="Treat warnings (unsupported commands) as errors.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write the JSON here instead of stdout.")
@VAR_OPTION
@TEMPLATE_OPTION
@FAMILY_OPTION
@RELEASE_OPTION
def split(file: str, strict: bool, output: str | None, var_pairs: tuple[str, ...], template: bool,
          family: str | None, release: str | None) -> int:
    try:
        result = parse_kickstart(file, variables=parse_vars(var_pairs), strict=strict, template=template,
                                 family=family, release=release)
    except KickstartError as exc:
        for diagnostic in exc.diagnostics:
            click.echo(str(diagnostic), err=True)
        return EXIT_BAD_INPUT
    for diagnostic in result.warnings:
        click.echo(str(diagnostic), err=True)
    _emit(json.dumps(_document(result), indent=2) + "\n", output)
    return EXIT_OK


@ks.command("render", help=f"""Render a kickstart template (a file named *{TEMPLATE_SUFFIX}) with per-host values.

Every `{{{{ name }}}}` must be given with --var name=value: an undefined variable is an error located at
its line (exit 2), never an empty string. Jinja2 comments are off: `{{# ... #}}` stays as written.
A file not named *{TEMPLATE_SUFFIX} is refused unless --template is given. Writes to stdout, or atomically
to -o FILE.""")
@click.argument("file", type=click.Path(dir_okay=False))
@VAR_OPTION
@TEMPLATE_OPTION
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write the rendered kickstart here.")
def render(file: str, var_pairs: tuple[str, ...], template: bool, output: str | None) -> int:
    from .templating import render_template

    variables = parse_vars(var_pairs)
    if not template and not is_template(file):
        raise BadInput(f"not a template: only files named *{TEMPLATE_SUFFIX} are rendered "
                       "(add --template to render this one anyway)", location=file)
    _emit(render_template(file, variables), output)
    return EXIT_OK


def ignored_items(diagnostics) -> list[str]:
    """The commands and options the diagnostics say are ignored, each once, in reading order."""
    seen: list[str] = []
    for diagnostic in diagnostics:
        what = getattr(diagnostic, "ignored", None)
        if what and what not in seen:
            seen.append(what)
    return seen


def _document(result) -> dict:
    return {"source": result.source, "sha256": result.sha256, "build": result.build.to_dict(),
            "deploy": result.deploy.to_dict(), "warnings": [asdict(w) for w in result.warnings],
            "ignored": ignored_items(result.warnings), "deferred_includes": result.deferred_includes}


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
