"""Deploy-time kickstart carried in a deployment request → the deploy spec (`storage`) of the plan.

The text goes through the builder's kickstart front end (tarball_builder.kickstart: templating,
pykickstart at the pinned syntax, the deploy half of the split), so it is validated exactly like a
kickstart given to `metalstream ks`. Only its deploy commands are used (clearpart, part, autopart,
bootloader, network, sshkey, ...); a full kickstart is accepted too and its build part ignored.
Because the text comes from an API client, anything that would read files on the server
(`%include`, `%ksappend`, template statements) is refused before parsing.
"""
from __future__ import annotations

import re
import tempfile
from pathlib import Path

from deployer.errors import BadInput

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
        from tarball_builder.kickstart.adapter import parse
        from tarball_builder.kickstart.build_split import ssh_keys
        from tarball_builder.kickstart.deploy_split import split_deploy
        from tarball_builder.kickstart.diagnostics import Findings
        from tarball_builder.kickstart.source import expand
        from tarball_builder.kickstart.support import check_support
    except ImportError as exc:
        raise Unavailable(f"deploy-time kickstarts need tarball_builder.kickstart ({exc})") from None
    with tempfile.TemporaryDirectory(prefix="metalstream-ks-") as tmp:
        path = Path(tmp) / "kickstart"
        path.write_text(text)
        findings = Findings(str(path))
        source = expand(str(path), None, findings)
        deploy = None
        if source is not None:
            findings.origins = source.origins
            parsed = parse(source.text, findings)
            check_support(parsed, findings)
            deploy = split_deploy(parsed, findings)
            deploy.ssh_keys = ssh_keys(parsed, findings)
    errors = findings.errors
    if errors or deploy is None:
        first = errors[0] if errors else None
        raise BadInput(first.message if first else "kickstart could not be read",
                       location=f"kickstart:{first.line}" if first and first.line else "kickstart",
                       details={"diagnostics": [f"kickstart:{d.line}: {d.severity}: {d.message}" for d in errors]})
    return deploy.to_dict()
