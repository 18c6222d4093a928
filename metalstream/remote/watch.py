"""Follow deployments until each ends (active, failed or cancelled) by polling GET /api/v1/deployments/ID.

On a terminal: one rich progress bar per deployment (state/phase, bytes, rate, ETA from the service). Else:
one line whenever a deployment's state or phase changes, so logs and tests read what happened.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field

import click

from metalstream.errors import MetalstreamError
from metalstream.humanize import format_bytes, format_duration

from .client import ApiError, Client

ENDED = ("active", "failed", "cancelled")
MAX_OUTAGE = 60.0  # seconds of consecutive failed polls (a restarting service) before watch gives up


@dataclass
class Watched:
    id: str
    record: dict = field(default_factory=dict)

    @property
    def state(self) -> str:
        return self.record.get("state", "?")

    @property
    def ended(self) -> bool:
        return self.state in ENDED

    def label(self) -> str:
        phase = self.record.get("phase")
        host = self.record.get("hostname") or self.record.get("mac") or ""
        return f"{self.id[:12]} {host} {self.state}{'/' + phase if phase and not self.ended else ''}"

    def why(self) -> str:
        r = self.record
        return r.get("error") or r.get("message") or r.get("check_message") or self.state


def watch(client: Client, ids: list[str], *, interval: float, timeout: float | None, out=None) -> int:
    """Poll until every deployment has ended; 0 when all are active, else 1 (each failure is printed)."""
    out = out or sys.stdout
    watched = [Watched(i) for i in dict.fromkeys(ids)]
    for w in watched:  # the first poll: an unknown id is an error before any display starts
        w.record = client.get(f"/api/v1/deployments/{w.id}")
    deadline = None if timeout is None else time.monotonic() + timeout
    display = _Bars(watched) if out.isatty() else _Lines(watched, out)
    with display:
        display.update()
        last_ok = time.monotonic()
        while not all(w.ended for w in watched):
            if deadline is not None and time.monotonic() >= deadline:
                break
            time.sleep(interval)
            try:
                for w in watched:
                    if not w.ended:
                        w.record = client.get(f"/api/v1/deployments/{w.id}")
                last_ok = time.monotonic()
            except ApiError:
                raise
            except MetalstreamError as exc:  # connection lost: a restarting service comes back
                if time.monotonic() - last_ok > MAX_OUTAGE:
                    raise
                click.echo(f"metalstream: {exc} (retrying)", err=True)
            display.update()
    return report(watched, timed_out=not all(w.ended for w in watched), timeout=timeout)


def report(watched: list[Watched], *, timed_out: bool, timeout: float | None) -> int:
    bad = [w for w in watched if w.state != "active"]
    for w in bad:
        if w.ended:
            click.echo(f"metalstream: deployment {w.id} {w.state}: {w.why()}", err=True)
        else:
            click.echo(f"metalstream: deployment {w.id} still {w.state} after {timeout:g} s (--timeout)", err=True)
    if not bad:
        click.echo(f"metalstream: {len(watched)} deployment{'s' if len(watched) > 1 else ''} active", err=True)
    return 1 if bad or timed_out else 0


class _Lines:
    """Without a terminal: a line for each change of state, phase or message."""

    def __init__(self, watched: list[Watched], out):
        self.watched, self.out, self.seen = watched, out, {}

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass

    def update(self) -> None:
        for w in self.watched:
            r = w.record
            key = (r.get("state"), r.get("phase"), r.get("message"))
            if self.seen.get(w.id) == key:
                continue
            self.seen[w.id] = key
            progress = ""
            if r.get("bytes_total"):
                progress = f" {format_bytes(r.get('bytes_done') or 0)}/{format_bytes(r['bytes_total'])}"
            eta = f" eta {format_duration(r['eta_seconds'])}" if r.get("eta_seconds") is not None else ""
            message = f" {r['message']}" if r.get("message") else ""
            error = f" error: {r['error']}" if r.get("error") else ""
            print(f"{w.id} {r.get('state')} {r.get('phase') or '-'}{progress}{eta}{message}{error}", file=self.out,
                  flush=True)


class _Bars:
    """On a terminal: rich progress bars, one per deployment."""

    def __init__(self, watched: list[Watched]):
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TransferSpeedColumn,
        )
        self.watched = watched
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(binary_units=True),
                                 TransferSpeedColumn(), TextColumn("eta {task.fields[eta]}"), refresh_per_second=4)
        self.tasks = {w.id: self.progress.add_task(w.label(), total=None, eta="-") for w in watched}

    def __enter__(self):
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()

    def update(self) -> None:
        for w in self.watched:
            r = w.record
            total = r.get("bytes_total") or None
            done = r.get("bytes_done") or 0
            if w.state in ("installed", "active"):
                done = total or done  # the stream is over; the bar shows it whole
            eta = r.get("eta_seconds")
            self.progress.update(self.tasks[w.id], description=w.label(), total=total, completed=done,
                                 eta=format_duration(eta) if eta is not None else "-")
