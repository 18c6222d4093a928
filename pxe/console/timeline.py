"""What the console shows of a deployment, computed from its API form: phase steps with their durations,
the streaming rate, and which log lines are the failure. Pure: no Flask, no SQL."""
from __future__ import annotations

from dataclasses import dataclass

from .. import states

LOG_TAIL_LINES = 1000  # the page shows the log's last lines (the failure is at the end); the whole log is a link away


@dataclass
class Step:
    label: str            # the agent's phase while installing, else the deployment's state
    state: str
    started: float
    seconds: float | None  # None: the step is still running on a closed deployment (nothing to measure)
    running: bool
    messages: list[str]


def steps(deployment: dict, now: float) -> list[Step]:
    """Consecutive events of one state and phase make a step; a step lasts until the next one starts,
    and the last one of an open deployment until now."""
    out: list[Step] = []
    for event in deployment.get("events") or []:
        label = event["phase"] if event["state"] == states.INSTALLING and event["phase"] else event["state"]
        if out and out[-1].label == label and out[-1].state == event["state"]:
            if event["message"] and event["message"] not in out[-1].messages[-1:]:
                out[-1].messages.append(event["message"])
            continue
        if out:
            out[-1].seconds = max(0.0, event["time"] - out[-1].started)
        out.append(Step(label, event["state"], event["time"], None, False,
                        [event["message"]] if event["message"] else []))
    if out and deployment["state"] in states.OPEN_STATES:
        out[-1].running = True
        out[-1].seconds = max(0.0, now - out[-1].started)
    return out


def stream_rate(deployment: dict) -> float | None:
    """Bytes per second between the first and the latest streaming event that carry a byte count."""
    points = [(e["time"], e["bytes_done"]) for e in deployment.get("events") or []
              if e["phase"] == "stream" and e["bytes_done"] is not None]
    if len(points) < 2 or points[-1][0] <= points[0][0]:
        return None
    return max(0.0, (points[-1][1] - points[0][1]) / (points[-1][0] - points[0][0]))


def percent(deployment: dict) -> float | None:
    done, total = deployment.get("bytes_done"), deployment.get("bytes_total")
    if not total or done is None:
        return None
    return min(100.0, 100.0 * done / total)


@dataclass
class LogLine:
    number: int
    text: str
    failing: bool


def log_lines(log: str | None, error: str | None, limit: int = LOG_TAIL_LINES) -> tuple[list[LogLine], int]:
    """The log's last `limit` lines, those that state the failure marked, and how many lines came before.

    A failing line holds the deployment's error (its first line), or is a line logged at level ERROR."""
    lines = (log or "").splitlines()
    wanted = (error or "").strip().splitlines()[0] if (error or "").strip() else None
    skipped = max(0, len(lines) - limit)
    out = []
    for number, text in enumerate(lines[skipped:], start=skipped + 1):
        failing = bool(wanted and wanted in text) or " ERROR " in text
        out.append(LogLine(number, text, failing))
    return out, skipped


def human_bytes(count: float | None) -> str:
    if count is None:
        return ""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(count) < 1024 or unit == "TiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return ""


def human_seconds(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"
