"""Run the service under gunicorn (programmatically; never the Flask development server).

Worker class `gthread`: each worker process serves several requests at once on threads, so slow
image downloads do not block boot-script requests, and a full-file response still goes through
gunicorn's sendfile path (`wsgi.file_wrapper`). Workers are forked before the app is created
(no preload), so every worker has its own database connections and supervisor thread.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from gunicorn.app.base import BaseApplication

from .config import ServiceConfig


class MetalstreamServer(BaseApplication):
    def __init__(self, config: ServiceConfig, *, bind: str, workers: int, threads: int, timeout: int):
        self.service_config = config
        self.options = {
            "bind": bind,
            "workers": workers,
            "worker_class": "gthread",
            "threads": threads,
            "timeout": timeout,  # a worker silent this long is restarted; sendfile keeps it responsive
            "graceful_timeout": 10,
            "accesslog": "-",
            "errorlog": "-",
            "loglevel": "info",
            "post_worker_init": _post_worker_init,
            "child_exit": _child_exit,
            "proc_name": "metalstream-serve",
            # gunicorn's default control socket is one per user ($HOME/.gunicorn/gunicorn.ctl), so a second
            # service on the host would take it over; nothing here uses `gunicornc`.
            "control_socket_disable": True,
        }
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self):
        from .app import create_app
        return create_app(self.service_config)


def _post_worker_init(worker) -> None:
    from . import supervisor
    app = worker.wsgi
    supervisor.start(app.extensions["metalstream"])


def _child_exit(_server, worker) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess
        multiprocess.mark_process_dead(worker.pid)


def prepare_metrics_dir(data_dir: Path) -> None:
    """prometheus_client multiprocess mode: a fresh directory per run, set before workers import it."""
    path = data_dir / "prometheus"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)


def serve(config: ServiceConfig, *, bind: str, workers: int, threads: int, timeout: int = 120) -> None:
    config.prepare()
    prepare_metrics_dir(config.data_dir)
    # Create the schema, deploy key and check the installer once, before forking: errors surface here.
    from .service import Service
    Service.open(config).engine.dispose()
    MetalstreamServer(config, bind=bind, workers=workers, threads=threads, timeout=timeout).run()
