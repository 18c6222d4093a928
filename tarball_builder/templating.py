"""Jinja2 templating of kickstarts for per-host values (`metalstream ks render FILE.ks.j2 --var k=v`).

Templating is opt-in: only a file whose name ends in `.j2` is a template, or any file when the caller
asks for it (`--template`, `template=True`). A plain kickstart is never rendered, so `${#dev}` or
`{{` in its shell stays as written.

In a template, undefined variables are errors located at their line (`FILE:LINE: undefined variable
'x'`), never an empty string. Templates are rendered in a sandbox and `{% include %}` finds files
beside the template. Jinja2 comments are switched off: `{#` ... `#}` is literal text (a shell
`${#array[@]}` keeps working), so rendering can never delete text silently. Use
`{% raw %}...{% endraw %}` around text that must keep a literal `{{` or `{%`.

jinja2 is imported only when a template is rendered: a plain `ks lint` does not pay for it.
"""
from __future__ import annotations

import re
import traceback
from pathlib import Path

from metalstream.errors import BadInput

TEMPLATE_SUFFIX = ".j2"
_UNDEFINED_NAME = re.compile(r"^'([^']+)' is undefined$")
# Jinja2 needs comment delimiters; these contain a NUL byte, which a template may not contain (checked).
_NO_COMMENT_START, _NO_COMMENT_END = "\0{#", "#}\0"


class TemplateError(BadInput):
    """A kickstart template could not be rendered; `file` and `line` say where."""

    def __init__(self, file: str, line: int | None, reason: str):
        super().__init__(reason, location=f"{file}:{line}" if line else file)
        self.file = file
        self.line = line


def is_template(path: str | Path) -> bool:
    """A file is a template when its name ends in `.j2` (e.g. `web.ks.j2`)."""
    return Path(path).name.endswith(TEMPLATE_SUFFIX)


def without_template_suffix(name: str) -> str:
    return name.removesuffix(TEMPLATE_SUFFIX)


def parse_vars(pairs: list[str] | tuple[str, ...]) -> dict[str, str]:
    """Turn `k=v` strings (from `--var`) into a dict; a malformed pair is bad input."""
    variables: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        name = name.strip()
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise BadInput(f"--var {pair!r}: expected NAME=VALUE with NAME an identifier (letters, digits, _)")
        variables[name] = value
    return variables


def render_template(path: str | Path, variables: dict[str, str] | None) -> str:
    """Render the kickstart template at `path` with `variables`; raise TemplateError (located) on any problem."""
    import jinja2
    from jinja2.sandbox import SandboxedEnvironment

    path = Path(path)
    shown = str(path)

    def load(name: str):
        source = jinja2.FileSystemLoader(str(path.parent or Path("."))).get_source(env, name)
        if "\0" in source[0]:
            raise TemplateError(_shown_name(source[1], path), None, "a NUL byte: not a text file")
        return source

    env = SandboxedEnvironment(
        loader=jinja2.FunctionLoader(load),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
        comment_start_string=_NO_COMMENT_START,
        comment_end_string=_NO_COMMENT_END,
    )
    try:
        template = env.get_template(path.name)
    except jinja2.TemplateNotFound:
        raise TemplateError(shown, None, "cannot read: no such file") from None
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(_shown_name(exc.filename, path), exc.lineno, f"template syntax error: {exc.message}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TemplateError(shown, None, f"cannot read: {exc}") from None
    try:
        return template.render(**(variables or {}))
    except jinja2.UndefinedError as exc:
        file, line = _template_frame(exc, path)
        match = _UNDEFINED_NAME.match(exc.message or "")
        reason = f"undefined variable '{match.group(1)}'" if match else f"undefined value: {exc.message}"
        raise TemplateError(file, line, reason) from None
    except jinja2.TemplateNotFound as exc:
        file, line = _template_frame(exc, path)
        raise TemplateError(file, line, f"included template not found: {exc.name}") from None
    except jinja2.TemplateSyntaxError as exc:  # a syntax error inside an {% include %}d template
        raise TemplateError(_shown_name(exc.filename, path), exc.lineno, f"template syntax error: {exc.message}") from None
    except jinja2.TemplateError as exc:
        file, line = _template_frame(exc, path)
        raise TemplateError(file, line, f"template error: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:  # an {% include %}d file that cannot be read
        file, line = _template_frame(exc, path)
        raise TemplateError(file, line, f"cannot read an included template: {exc}") from None


def _shown_name(filename: str | None, path: Path) -> str:
    """Name a template file the way the user named the kickstart (relative paths stay relative)."""
    if not filename:
        return str(path)
    resolved = Path(filename)
    if resolved.resolve() == path.resolve():
        return str(path)
    return str(path.parent / resolved.name) if resolved.parent.resolve() == path.parent.resolve() else filename


def _template_frame(exc: BaseException, path: Path) -> tuple[str, int | None]:
    """Jinja2 rewrites tracebacks so template frames carry the template's file and line: find the innermost."""
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if frame.filename and not frame.filename.endswith(".py") and Path(frame.filename).exists():
            return _shown_name(frame.filename, path), frame.lineno
    return str(path), None
