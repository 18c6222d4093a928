"""Jinja2 templating of kickstarts (opt-in: *.j2): values substituted, undefined variables are located errors,
Jinja comments are off so no text is ever deleted."""
from __future__ import annotations

from pathlib import Path

import pytest

from metalstream.errors import BadInput
from tarball_builder.templating import TemplateError, is_template, parse_vars, render_template


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_variables_are_substituted_and_lines_kept(tmp_path: Path) -> None:
    ks = write(tmp_path / "a.ks", "lang C.UTF-8\nnetwork --hostname={{ host }}\n{% if ssh %}\nservices --enabled=ssh\n{% endif %}\n")
    rendered = render_template(ks, {"host": "node-7", "ssh": "yes"})
    assert rendered == "lang C.UTF-8\nnetwork --hostname=node-7\n\nservices --enabled=ssh\n\n"
    assert len(rendered.splitlines()) == len(ks.read_text().splitlines())  # line numbers stay meaningful


def test_text_without_template_syntax_is_unchanged(tmp_path: Path) -> None:
    text = "%post\necho $HOME ${PATH} 100%\n%end\n"
    assert render_template(write(tmp_path / "b.ks", text), {}) == text


def test_undefined_variable_is_a_located_error_never_empty(tmp_path: Path) -> None:
    ks = write(tmp_path / "c.ks", "lang C.UTF-8\n\nnetwork --hostname={{ host }}\n")
    with pytest.raises(TemplateError) as caught:
        render_template(ks, {"other": "x"})
    error = caught.value
    assert isinstance(error, BadInput)
    assert (error.file, error.line, error.reason) == (str(ks), 3, "undefined variable 'host'")
    assert str(error) == f"{ks}:3: undefined variable 'host'"


def test_undefined_variable_in_a_condition_and_default_filter(tmp_path: Path) -> None:
    ks = write(tmp_path / "d.ks", "url --url={{ mirror | default('file:///srv/m') }}\n{% if debug %}\ntext\n{% endif %}\n")
    with pytest.raises(TemplateError) as caught:
        render_template(ks, {})
    assert (caught.value.line, caught.value.reason) == (2, "undefined variable 'debug'")
    assert render_template(ks, {"debug": ""}).startswith("url --url=file:///srv/m\n")


def test_error_inside_a_jinja_include_names_the_included_file(tmp_path: Path) -> None:
    write(tmp_path / "part.j2", "reqpart\npart / --size={{ root_size }}\n")
    ks = write(tmp_path / "e.ks", "zerombr\n{% include 'part.j2' %}\n")
    with pytest.raises(TemplateError) as caught:
        render_template(ks, {})
    assert (Path(caught.value.file).name, caught.value.line) == ("part.j2", 2)
    assert render_template(ks, {"root_size": "4096"}) == "zerombr\nreqpart\npart / --size=4096\n\n"


def test_syntax_error_is_located(tmp_path: Path) -> None:
    ks = write(tmp_path / "f.ks", "lang C.UTF-8\n{% if %}\n")
    with pytest.raises(TemplateError) as caught:
        render_template(ks, {})
    assert caught.value.line == 2 and caught.value.reason.startswith("template syntax error")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match="cannot read"):
        render_template(tmp_path / "absent.ks", {})


def test_sandbox_refuses_unsafe_attribute_access(tmp_path: Path) -> None:
    ks = write(tmp_path / "g.ks", "{{ ''.__class__.__mro__ }}\n")
    with pytest.raises(TemplateError) as caught:
        render_template(ks, {})
    assert caught.value.line == 1


def test_parse_vars() -> None:
    assert parse_vars(["host=node-1", "append=a=b c", "empty="]) == {"host": "node-1", "append": "a=b c", "empty": ""}
    for bad in ("novalue", "=x", "bad-name=1", "1x=2"):
        with pytest.raises(BadInput, match="NAME=VALUE"):
            parse_vars([bad])


def test_jinja_comments_are_off_so_nothing_is_deleted(tmp_path: Path) -> None:
    text = "%post\nn=${#devs[@]}\necho {# kept #} and {#\n#} too {{ host }}\n%end\n"
    ks = write(tmp_path / "h.ks.j2", text)
    assert render_template(ks, {"host": "n1"}) == text.replace("{{ host }}", "n1")


def test_a_nul_byte_in_a_template_is_refused(tmp_path: Path) -> None:
    ks = tmp_path / "i.ks.j2"
    ks.write_bytes(b"lang C.UTF-8\n\0{# x #}\0\n")
    with pytest.raises(TemplateError, match="NUL byte"):
        render_template(ks, {})


def test_only_j2_names_are_templates() -> None:
    assert is_template("web.ks.j2") and is_template("/a/b/part.inc.j2")
    assert not is_template("web.ks") and not is_template("j2.ks") and not is_template("web.j2.ks")
