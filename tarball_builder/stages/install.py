"""Stage `install`: the distribution's own tool installs the kickstart's packages into the root."""
from __future__ import annotations

from ..context import Backend, BuildContext


class InstallStage:
    name = "install"
    description = "install packages into the root"

    def __init__(self, backend: Backend):
        self.backend = backend

    def run(self, ctx: BuildContext) -> None:
        self.backend.install(ctx)
        ctx.facts["packages"] = self.backend.installed_packages(ctx)
        ctx.log.info("%d packages installed", len(ctx.facts["packages"]))
