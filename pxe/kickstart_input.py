"""Deploy-time kickstart carried in a deployment request → the deploy spec (`storage`) of the plan.

The text goes through the builder's kickstart front end (tarball_builder.kickstart: pykickstart at the
pinned syntax, the deploy half of the split; never rendered as a template), so it is validated exactly like a
kickstart given to `metalstream ks`. Only its deploy commands are used (clearpart, part, autopart,
bootloader, network, sshkey, ..., and `%addon org_metalstream_deploy`'s `secure_boot=true`); a full
kickstart is accepted too and its build part ignored.
Because the text comes from an API client, anything that would read files on the server
(`%include`, `%ksappend`) is refused before parsing, and so are template statements, which a client
might expect to be rendered.
"""
from __future__ import annotations

import re
import tempfile
from pathlib import Path

from metalstream.errors import BadInput

from .errors import Unavailable

_FILE_READERS = re.compile(r"^\s*(%include|%ksappend)\b|\{%", re.MULTILINE)


def deploy_spec_from_text(text: str) -> dict:
    """Parse kickstart text; BadInput located at `kickstart:LINE` (details carry every diagnostic)."""
    refused = _FILE_READERS.search(text)
    if refused:
        line = text.count("\n", 0, refused.start()) + 1
        raise BadInput("%include, %ksappend and template statements ({% %}) are not allowed in a deploy-time "
                       "kickstart sent to the service", location=f"kickstart:{line}")
    try:
        from tarball_builder.kickstart import KickstartError, parse_deploy_kickstart
    except ImportError as exc:
        raise Unavailable(f"deploy-time kickstarts need tarball_builder.kickstart ({exc})") from None
    with tempfile.TemporaryDirectory(prefix="metalstream-ks-") as tmp:
        path = Path(tmp) / "kickstart"
        path.write_text(text)
        try:
            deploy = parse_deploy_kickstart(path)
        except KickstartError as exc:
            errors = exc.diagnostics
            first = errors[0]
            raise BadInput(first.message, location=f"kickstart:{first.line}" if first.line else "kickstart",
                           details={"diagnostics": [f"kickstart:{d.line}: {d.severity}: {d.message}"
                                                    for d in errors]}) from None
    return deploy.to_dict()
