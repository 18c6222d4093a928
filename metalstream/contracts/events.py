"""What the agent reports to the service (docs/contracts.md §3): progress events and one final result.

Writers (`event_document`, `result_document`) make the JSON the agent posts; readers (`read_event`,
`read_result`) are what the service accepts: every field checked, numbers finite and within a
BIGINT, progress never beyond its total.
"""
from __future__ import annotations

from typing import Any

from ..errors import BadInput
from . import rules

EVENT_FIELDS = ("phase", "message", "bytes_done", "bytes_total", "time", "seq", "secure_boot")
RESULT_FIELDS = ("success", "phase", "error", "log", "root_uuid", "time", "secure_boot")
MAX_MESSAGE = 4096
MAX_ERROR = 64 * 1024
MAX_LOG = 8 * 1024 * 1024
MAX_TIME = 1e11  # seconds since the epoch: year 5138


def event_document(phase: str, message: str, bytes_done: int | None, bytes_total: int | None,
                   time: float, seq: int | None = None, secure_boot: bool | None = None) -> dict:
    """`seq` (1, 2, ... per agent run) lets the service store a retried event once. `secure_boot` (whether the
    installer booted with Secure Boot on) is written only when known, so a BIOS agent's event is unchanged."""
    message = rules.CONTROL.sub(" ", message)
    if len(message) > MAX_MESSAGE:
        message = message[:MAX_MESSAGE - 3] + "..."
    document = {"phase": phase, "message": message, "bytes_done": bytes_done, "bytes_total": bytes_total,
                "time": time}
    if seq is not None:
        document["seq"] = seq
    if secure_boot is not None:
        document["secure_boot"] = secure_boot
    return document


def result_document(*, success: bool, phase: str, error: str | None, log: str, root_uuid: str | None,
                    time: float, secure_boot: bool | None = None) -> dict:
    if error is not None and len(error) > MAX_ERROR:
        error = error[:MAX_ERROR - 3] + "..."
    if len(log) > MAX_LOG:
        log = "[... start of log omitted ...]\n" + log[-(MAX_LOG - 64):]
    document = {"success": success, "phase": phase, "error": error, "log": log, "root_uuid": root_uuid, "time": time}
    if secure_boot is not None:
        document["secure_boot"] = secure_boot
    return document


def _secure_boot(data: dict) -> bool | None:
    """Optional: true/false, or null/absent when the agent does not know (BIOS, or an older agent)."""
    value = data.get("secure_boot")
    return None if value is None else rules.boolean(value, "secure_boot")


def _time(data: dict) -> float | None:
    value = data.get("time")
    return None if value is None else rules.number(value, "time", maximum=MAX_TIME)


def read_event(data: Any) -> dict:
    rules.expect_object(data, "", EVENT_FIELDS)
    out = {"phase": rules.phase(data.get("phase"), "phase"),
           "message": rules.text(data.get("message", ""), "message", max_length=MAX_MESSAGE)}
    for key in ("bytes_done", "bytes_total"):
        out[key] = None if data.get(key) is None else rules.integer(data[key], key)
    if None not in (out["bytes_done"], out["bytes_total"]) and out["bytes_done"] > out["bytes_total"]:
        raise BadInput("must not exceed bytes_total", location="bytes_done")
    out["time"] = _time(data)
    out["seq"] = None if data.get("seq") is None else rules.integer(data["seq"], "seq", minimum=1)
    out["secure_boot"] = _secure_boot(data)
    return out


def read_result(data: Any) -> dict:
    rules.expect_object(data, "", RESULT_FIELDS)
    if not isinstance(data.get("success"), bool):
        raise BadInput("is required and must be true or false", location="success")
    error = data.get("error")
    if error is not None and (not isinstance(error, str) or len(error) > MAX_ERROR):
        raise BadInput(f"must be a string of at most {MAX_ERROR} characters, or null", location="error")
    if not data["success"] and not error:
        raise BadInput("is required when success is false", location="error")
    log = data.get("log", "")
    if not isinstance(log, str) or len(log) > MAX_LOG:
        raise BadInput(f"must be a string of at most {MAX_LOG} characters", location="log")
    root_uuid = data.get("root_uuid")
    if root_uuid is not None:
        rules.fs_uuid(root_uuid, "root_uuid")
    if data["success"] and not root_uuid:
        raise BadInput("is required when success is true", location="root_uuid")
    return {"success": data["success"], "phase": rules.phase(data.get("phase"), "phase"), "error": error,
            "log": log, "root_uuid": root_uuid, "time": _time(data), "secure_boot": _secure_boot(data)}
