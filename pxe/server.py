"""Run the service under gunicorn (programmatically; never the Flask development server).

Worker class `gthread`: each worker process serves several requests at once on threads, so slow
image downloads do not block boot-script requests, and a full-file response still goes through
gunicorn's sendfile path (`wsgi.file_wrapper`). Workers are forked before the app is created
(no preload), so every worker has its own database connections and supervisor thread.

With TLS (`tls_cert`/`tls_key`) gunicorn serves HTTPS on the main bind. Firmware that cannot verify
the certificate (iPXE, GRUB) gets a second, plain-HTTP bind (`boot_bind`): a separate gunicorn in a
child process (gunicorn's TLS setting covers every socket of one server), running the same app behind
`BootFilesOnly`, which answers 403 to everything but boot scripts and the installer's kernel and
initramfs. The child is `python -m pxe.server`, told its configuration on stdin (no secrets in argv).
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import select
import shutil
import subprocess
import sys
from pathlib import Path

from gunicorn.app.base import BaseApplication

from metalstream.errors import OperationFailed

from .config import ServiceConfig

# gunicorn's default access log line plus the scheme each request came by (https, or http on the boot bind).
ACCESS_LOG_FORMAT = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" %({wsgi.url_scheme}e)s'
BOOT_FILE_PATH = re.compile(r"/(boot\.ipxe|boot/[^/]+\.ipxe|boot/grub\.cfg|boot/grub/[^/]+\.cfg"
                            r"|installer/(vmlinuz|initrd\.img))\Z")
BOOT_LISTENER_READY = "ready"
BOOT_LISTENER_START_TIMEOUT = 30.0  # gunicorn retries a busy port for about 5 s before it gives up


class BootFilesOnly:
    """WSGI middleware for the plain-HTTP bind: boot scripts and installer files pass, the rest is 403."""

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        if BOOT_FILE_PATH.match(environ.get("PATH_INFO", "")):
            return self.app(environ, start_response)
        body = json.dumps({"error": "this plain-HTTP listener serves only boot scripts and the installer's kernel "
                                    "and initramfs; use the service's https URL"}).encode()
        start_response("403 FORBIDDEN", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]


class MetalstreamServer(BaseApplication):
    def __init__(self, config: ServiceConfig, *, bind: str, workers: int, threads: int, timeout: int,
                 boot_only: bool = False):
        self.service_config = config
        self.boot_only = boot_only
        self.options = {
            "bind": bind,
            "workers": workers,
            "worker_class": "gthread",
            "threads": threads,
            "timeout": timeout,  # a worker silent this long is restarted; sendfile keeps it responsive
            "graceful_timeout": 10,
            "accesslog": "-",
            "access_log_format": ACCESS_LOG_FORMAT,
            "errorlog": "-",
            "loglevel": "info",
            "child_exit": _child_exit,
            "proc_name": "metalstream-serve-boot" if boot_only else "metalstream-serve",
            # gunicorn's default control socket is one per user ($HOME/.gunicorn/gunicorn.ctl), so a second
            # service on the host would take it over; nothing here uses `gunicornc`.
            "control_socket_disable": True,
        }
        if boot_only:
            self.options["when_ready"] = _report_boot_listener_ready
        else:
            self.options["post_worker_init"] = _post_worker_init
        if config.tls_cert is not None and not boot_only:
            self.options.update(certfile=str(config.tls_cert), keyfile=str(config.tls_key))
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self):
        from .app import create_app
        app = create_app(self.service_config)
        return BootFilesOnly(app) if self.boot_only else app


def _post_worker_init(worker) -> None:
    from . import supervisor, webhook_delivery
    app = worker.wsgi
    supervisor.start(app.extensions["metalstream"])
    webhook_delivery.start(app.extensions["metalstream"])  # its own thread: a slow receiver delays nothing else


def _child_exit(_server, worker) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess
        multiprocess.mark_process_dead(worker.pid)


def prepare_metrics_dir(data_dir: Path) -> None:
    """prometheus_client multiprocess mode: a fresh directory per run, set before workers (and the TFTP child)
    import it. A second call in the same run keeps it: the TFTP child already writes there."""
    path = data_dir / "prometheus"
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR") == str(path) and path.is_dir():
        return
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)


def serve(config: ServiceConfig, *, bind: str, workers: int, threads: int, timeout: int = 120,
          boot_bind: str | None = None) -> None:
    """Serve until stopped; with `boot_bind`, also the plain-HTTP boot listener (stopped with the service)."""
    from metalstream import proc

    config.prepare()
    prepare_metrics_dir(config.data_dir)
    # Create the schema, deploy key and check the installer once, before forking: errors surface here.
    from .service import Service
    Service.open(config).engine.dispose()
    boot_listener = None
    if boot_bind is not None:
        boot_listener = start_boot_listener(config, boot_bind, workers=workers, threads=threads, timeout=timeout)
    serving_pid = os.getpid()
    try:
        MetalstreamServer(config, bind=bind, workers=workers, threads=threads, timeout=timeout).run()
    finally:
        # Workers are forks of this process and unwind through here too: only the parent stops the listener.
        if boot_listener is not None and os.getpid() == serving_pid:
            proc.terminate(boot_listener)


def _boot_listener_config(config: ServiceConfig) -> dict:
    """The configuration the boot listener runs with: no TLS, no sweep (the main service sweeps)."""
    values = dataclasses.replace(config, tls_cert=None, tls_key=None, supervisor_interval=0.0)
    return json.loads(json.dumps(dataclasses.asdict(values), default=str))


def start_boot_listener(config: ServiceConfig, bind: str, *, workers: int, threads: int, timeout: int,
                        wait: float = BOOT_LISTENER_START_TIMEOUT) -> subprocess.Popen:
    """Start the plain-HTTP boot listener on `bind` in a child process that dies with this one; return
    once it listens. Raises OperationFailed if it could not (port in use, no permission)."""
    from metalstream import proc

    child = proc.spawn([sys.executable, "-m", "pxe.server", bind, str(workers), str(threads), str(timeout)],
                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=None, die_with_parent=True)
    child.stdin.write(json.dumps(_boot_listener_config(config)).encode())
    child.stdin.close()
    readable, _, _ = select.select([child.stdout], [], [], wait)
    status = child.stdout.readline().decode(errors="replace").strip() if readable else ""
    child.stdout.close()
    if status == BOOT_LISTENER_READY:
        return child
    reason = _silent_failure(child) if readable else f"no answer within {wait:.0f} s"
    proc.terminate(child, grace=2)
    raise OperationFailed(f"the plain-HTTP boot listener on {bind} could not start: {reason}",
                          details={"argv": list(child.args), "returncode": child.returncode})


def _silent_failure(child: subprocess.Popen) -> str:
    try:
        returncode = child.wait(10)
    except subprocess.TimeoutExpired:
        return "it closed its status pipe without saying it listens"
    return f"it exited with status {returncode} (its error is in the log above)"


def _report_boot_listener_ready(_server) -> None:
    """gunicorn's when_ready in the boot listener: one line to the parent, then stdout joins stderr (the log)."""
    print(BOOT_LISTENER_READY, flush=True)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())


def main(argv: list[str] | None = None) -> None:
    """`python -m pxe.server BIND WORKERS THREADS TIMEOUT` with the ServiceConfig as JSON on stdin: the
    plain-HTTP boot listener `serve(boot_bind=...)` starts."""
    bind, workers, threads, timeout = argv if argv is not None else sys.argv[1:]
    config = ServiceConfig(**json.loads(sys.stdin.read()))
    sys.stdin.close()
    MetalstreamServer(config, bind=bind, workers=int(workers), threads=int(threads), timeout=int(timeout),
                      boot_only=True).run()


if __name__ == "__main__":
    main()
