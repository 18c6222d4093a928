"""Stage `post`: the kickstart's %post scripts, in order, with the interpreter each asks for.

A chroot script runs inside the root (tarball_builder.chroot: private mounts and PID namespace,
no daemons). A `--nochroot` script runs on the build host, isolated the same way, with the root's
path in `METALSTREAM_ROOT` (and `ANA_INSTALL_PATH`, the name anaconda uses, so existing kickstarts work).
A failing script always fails the build with its output and kickstart line: an image whose %post
half-ran is not the image the kickstart describes (anaconda would only warn without --erroronfail).
"""
from __future__ import annotations

import shutil
from pathlib import Path

from metalstream import rootfs
from metalstream.errors import CommandError, OperationFailed

from ..chroot import for_build
from ..context import BuildContext
from ..spec import Script
from .util import where

POST_TIMEOUT = 3600.0
OUTPUT_TAIL = 20


class PostStage:
    name = "post"
    description = "run %post scripts"

    def run(self, ctx: BuildContext) -> None:
        for index, script in enumerate(ctx.build.post, start=1):
            run_script(ctx, script, index)


def run_script(ctx: BuildContext, script: Script, index: int) -> None:
    loc = where(ctx, script.line)
    kind = "%post --nochroot" if script.nochroot else "%post"
    interpreter = script.interpreter or "/bin/sh"
    if script.nochroot:
        if shutil.which(interpreter) is None:
            raise OperationFailed(f"{loc}: {kind}: interpreter {interpreter} not found on the build machine")
        tree, script_file = ctx.workdir, f"post-{index}"
        path = rootfs.write_file(tree, script_file, script.body, mode=0o700)
        argv = [interpreter, str(path)]
    else:
        if not rootfs.exists(ctx.root, interpreter):
            raise OperationFailed(f"{loc}: {kind}: interpreter {interpreter} is not in the image "
                                  "(add its package to %packages)")
        tree, script_file = ctx.root, f"/tmp/metalstream-post-{index}"
        rootfs.write_file(tree, script_file, script.body, mode=0o700)
        argv = [interpreter, script_file]
    ctx.log.info("running %s from %s", kind, loc)
    env = {"METALSTREAM_ROOT": str(ctx.root), "ANA_INSTALL_PATH": str(ctx.root)} if script.nochroot else {}
    # One stream, as the script printed it: stderr joins stdout.
    wrapped = ["/bin/sh", "-c", 'exec "$@" 2>&1', "post", *argv]
    try:
        with for_build(ctx) as chroot:
            if script.nochroot:
                result = chroot.run_outside(wrapped, env=env, cwd=ctx.workdir, check=False, timeout=POST_TIMEOUT)
            else:
                result = chroot.run(wrapped, env=env, check=False, timeout=POST_TIMEOUT)
    except CommandError as exc:  # timed out
        raise OperationFailed(f"{loc}: {kind} {exc}") from exc
    finally:
        rootfs.remove(tree, script_file)  # resolved again: the script may have replaced /tmp with a link
    output = result.stdout
    if output:
        ctx.log.info("%s output:\n%s", kind, output.rstrip())
    if script.log:  # --log names a path inside the root, or on the build host for --nochroot
        if script.nochroot:
            Path(script.log).write_text(output)
        else:
            rootfs.write_file(ctx.root, script.log, output)
    if result.returncode != 0:
        tail = "\n".join(output.rstrip().splitlines()[-OUTPUT_TAIL:])
        message = f"{loc}: {kind} failed with exit status {result.returncode}" + (f":\n{tail}" if tail else "")
        raise OperationFailed(message, details={"output": output})
