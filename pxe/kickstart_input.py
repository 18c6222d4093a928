"""Deploy-time kickstart carried in a deployment request → the deploy spec (`storage`) of the plan."""
from __future__ import annotations

import tempfile
from pathlib import Path

from deployer.errors import BadInput, MetalstreamError


class KickstartUnavailable(MetalstreamError):
    http_status = 501


def deploy_spec_from_text(text: str) -> dict:
    """Parse kickstart text with the builder's front end; BadInput located at `kickstart:LINE` on errors."""
    try:
        from tarball_builder.kickstart import KickstartError, parse_kickstart
    except ImportError as exc:
        raise KickstartUnavailable(f"deploy-time kickstarts need tarball_builder.kickstart ({exc})") from None
    with tempfile.TemporaryDirectory(prefix="metalstream-ks-") as tmp:
        path = Path(tmp) / "deploy.ks"
        path.write_text(text)
        try:
            split = parse_kickstart(path, strict=False)
        except KickstartError as exc:
            diagnostics = getattr(exc, "diagnostics", None) or []
            first = next((d for d in diagnostics if getattr(d, "severity", "error") == "error"), None)
            location = f"kickstart:{first.line}" if first is not None and first.line else "kickstart"
            message = first.message if first is not None else str(exc)
            raise BadInput(message, location=location,
                           details={"diagnostics": [str(d).replace(str(path), "kickstart") for d in diagnostics]}) from None
    return split.deploy.to_dict()
