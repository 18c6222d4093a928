"""Deploy-time kickstart carried in a deployment request → the deploy spec (`storage`) of the plan.

The text goes through the builder's kickstart front end (tarball_builder.kickstart: pykickstart at the
pinned syntax, the deploy half of the split; never rendered as a template), so it is validated exactly like a
kickstart given to `metalstream ks`. Only its deploy commands are used (clearpart, part, autopart,
bootloader, network, sshkey, ..., and `%addon org_metalstream_deploy`'s `secure_boot=true`); a full
kickstart is accepted too and its build part ignored.
Because the text comes from an API client, the service never reads a file it names: every `%include` is
deferred to deploy time (the agent reads it on the machine after the `%pre` scripts, and `merge_deferred` merges
its storage commands), `%ksappend` is refused before parsing, and so are template statements, which a client
might expect to be rendered.
"""
from __future__ import annotations

import re
import tempfile
from pathlib import Path

from metalstream.errors import BadInput

from .errors import Unavailable

_REFUSED = re.compile(r"^\s*%ksappend\b|\{%", re.MULTILINE)


def deploy_spec_from_text(text: str) -> dict:
    """Parse kickstart text; BadInput located at `kickstart:LINE` (details carry every diagnostic)."""
    refused = _REFUSED.search(text)
    if refused:
        line = text.count("\n", 0, refused.start()) + 1
        raise BadInput("%ksappend and template statements ({% %}) are not allowed in a deploy-time kickstart sent "
                       "to the service", location=f"kickstart:{line}")
    try:
        from tarball_builder.kickstart import KickstartError, parse_deploy_kickstart
    except ImportError as exc:
        raise Unavailable(f"deploy-time kickstarts need tarball_builder.kickstart ({exc})") from None
    with tempfile.TemporaryDirectory(prefix="metalstream-ks-") as tmp:
        path = Path(tmp) / "kickstart"
        path.write_text(text)
        try:
            deploy = parse_deploy_kickstart(path, defer_includes=True)
        except KickstartError as exc:
            errors = exc.diagnostics
            first = errors[0]
            raise BadInput(first.message, location=f"kickstart:{first.line}" if first.line else "kickstart",
                           details={"diagnostics": [f"kickstart:{d.line}: {d.severity}: {d.message}"
                                                    for d in errors]}) from None
    return deploy.to_dict()


def merge_deferred(storage: dict | None, includes: list[tuple[str, int | None, str]]) -> dict:
    """`storage` with the storage commands of its deferred `%include`s merged in, from their texts as the agent read
    them on the machine: each must be one the kickstart defers (path and line). BadInput at `PATH:LINE` of the
    included text (details carry every diagnostic)."""
    from metalstream.contracts.deployspec import DeferredInclude, DeploySpec

    spec = DeploySpec.from_dict(storage or {})
    deferred = {(d.path, d.line) for d in spec.deferred_includes}
    for number, (path, line, _text) in enumerate(includes):
        if (path, line) not in deferred:
            named = ", ".join(f"{p} (line {n})" for p, n in sorted(deferred, key=str)) or "none"
            raise BadInput(f"the deployment's kickstart defers no %include {path} at line {line} (it defers: "
                           f"{named})", location=f"includes[{number}]")
    try:
        from tarball_builder.kickstart import KickstartError
        from tarball_builder.kickstart.fragment import merge_includes
    except ImportError as exc:
        raise Unavailable(f"deferred %includes need tarball_builder.kickstart ({exc})") from None
    try:
        merged = merge_includes(spec, [(DeferredInclude(path, line), text) for path, line, text in includes])
    except KickstartError as exc:
        first = exc.diagnostics[0]
        raise BadInput(first.message, location=f"{first.file}:{first.line}" if first.line else first.file,
                       details={"diagnostics": [f"{d.file}:{d.line}: {d.severity}: {d.message}"
                                                for d in exc.diagnostics]}) from None
    return merged.to_dict()
