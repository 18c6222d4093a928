"""Reporters (console lines, HTTP events/result against a real local server) and the agent log capture."""
from __future__ import annotations

import io
import logging

from deployer.agentlog import AgentLog
from deployer.report import ConsoleReporter, HttpReporter, TeeReporter

MiB = 2**20


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_console_reporter_prints_phases_and_throttled_progress_with_rate_and_eta():
    out, clock = io.StringIO(), Clock()
    reporter = ConsoleReporter(out, interval=2.0, clock=clock)
    reporter.event("start", "starting install")
    reporter.event("stream", "streaming image", 0, 100 * MiB)
    for step in range(1, 10):  # every 0.5 s: only every 4th (2 s apart) is printed
        clock.now += 0.5
        reporter.event("stream", "streaming image", step * 10 * MiB, 100 * MiB)
    clock.now += 0.5
    reporter.event("stream", "streaming image", 100 * MiB, 100 * MiB)  # the final line always shows
    reporter.event("verify", "image sha256 ok")
    reporter.result(success=True, phase="finish", root_uuid="1234-abcd")
    assert out.getvalue().splitlines() == [
        "[start] starting install",
        "[stream] streaming image: 0 B / 100.0 MiB (0%)",
        "[stream] streaming image: 40.0 MiB / 100.0 MiB (40%), 20.0 MiB/s, ETA 0:03",
        "[stream] streaming image: 80.0 MiB / 100.0 MiB (80%), 20.0 MiB/s, ETA 0:01",
        "[stream] streaming image: 100.0 MiB / 100.0 MiB (100%), 20.0 MiB/s, ETA 0:00",
        "[verify] image sha256 ok",
        "[finish] install succeeded (root UUID 1234-abcd)",
    ]


def test_console_reporter_failure_line():
    out = io.StringIO()
    ConsoleReporter(out).result(success=False, phase="stream", error="image sha256 mismatch")
    assert out.getvalue() == "[stream] install FAILED: image sha256 mismatch\n"


def _http_reporter(service, clock, **kwargs) -> HttpReporter:
    return HttpReporter(f"{service.url}/api/v1/agent/events", f"{service.url}/api/v1/agent/result",
                        service.state.token, interval=3.0, clock=clock, sleep=lambda s: None, **kwargs)


def test_http_reporter_sends_contract_events_throttled_with_bearer_token(fake_service):
    clock = Clock()
    reporter = _http_reporter(fake_service, clock)
    reporter.event("start", "starting install")
    for step in range(11):  # one call per second for 10 s of streaming
        reporter.event("stream", "streaming image", step * 10 * MiB, 100 * MiB)
        clock.now += 1.0
    reporter.event("verify", "image sha256 ok")
    events = fake_service.state.events
    assert [(e["phase"], e["bytes_done"]) for e in events] == [
        ("start", None), ("stream", 0), ("stream", 30 * MiB), ("stream", 60 * MiB), ("stream", 90 * MiB),
        ("stream", 100 * MiB), ("verify", None)]
    assert set(events[1]) == {"phase", "message", "bytes_done", "bytes_total", "time", "seq"}
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))  # numbered as posted, none skipped
    assert events[1]["bytes_total"] == 100 * MiB and events[1]["message"] == "streaming image"
    assert set(fake_service.state.auth_seen) == {f"Bearer {fake_service.state.token}"}


def test_http_reporter_event_failures_never_abort(fake_service, caplog):
    clock = Clock()
    fake_service.state.fail_events = 1
    reporter = _http_reporter(fake_service, clock, quiet_after_failure=30.0)
    reporter.event("stream", "streaming image", 0, 100)  # 503: logged, not raised
    clock.now += 5
    reporter.event("stream", "streaming image", 50, 100)  # byte progress paused after a failure
    reporter.event("verify", "image sha256 ok")  # a phase change is tried at once
    assert reporter.events_failed == 1
    assert [e["phase"] for e in fake_service.state.events] == ["verify"]
    assert "could not report event stream" in caplog.text
    dead = HttpReporter("http://127.0.0.1:9/events", "http://127.0.0.1:9/result", "t", timeout=2)
    dead.event("start", "starting install")  # connection refused: logged, not raised
    assert dead.events_failed == 1


def test_http_reporter_result_is_retried_and_carries_the_log(fake_service):
    fake_service.state.fail_results = 2
    reporter = _http_reporter(fake_service, Clock(), log_source=lambda: "line 1\nline 2\n")
    assert reporter.result(success=False, phase="stream", error="boom") is True
    assert reporter.result_sent
    (result,) = fake_service.state.results
    assert result["success"] is False and result["phase"] == "stream" and result["error"] == "boom"
    assert result["log"] == "line 1\nline 2\n" and result["root_uuid"] is None
    assert set(result) == {"success", "phase", "error", "log", "root_uuid", "time"}


def test_http_reporter_result_gives_up_after_bounded_attempts(fake_service):
    fake_service.state.fail_results = 10
    waits = []
    reporter = HttpReporter(f"{fake_service.url}/e", f"{fake_service.url}/api/v1/agent/result",
                            fake_service.state.token, result_attempts=3, backoff=0.5, sleep=waits.append)
    assert reporter.result(success=True, phase="finish") is False
    assert waits == [0.5, 1.0]
    assert fake_service.state.results == []


def test_tee_reporter_feeds_every_reporter():
    a, b = io.StringIO(), io.StringIO()
    tee = TeeReporter(ConsoleReporter(a), ConsoleReporter(b))
    tee.event("disk", "selected /dev/vda")
    tee.result(success=True, phase="finish")
    assert a.getvalue() == b.getvalue() == "[disk] selected /dev/vda\n[finish] install succeeded\n"


def test_agent_log_captures_debug_without_changing_console_level():
    console = io.StringIO()
    root = logging.getLogger()
    handler = logging.StreamHandler(console)
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    try:
        with AgentLog() as agent_log:
            logging.getLogger("metalstream.proc").debug("run: mkfs.ext4 /dev/loop0")
            logging.getLogger("metalstream.stream").warning("resumed at byte 42")
        logging.getLogger("metalstream.test").warning("after capture")
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
    text = agent_log.text()
    assert "metalstream.proc DEBUG run: mkfs.ext4 /dev/loop0" in text
    assert "resumed at byte 42" in text and "after capture" not in text
    assert console.getvalue() == "resumed at byte 42\nafter capture\n"
    assert root.level == old_level and handler.level == logging.NOTSET


def test_agent_log_is_bounded_keeping_head_and_tail():
    agent_log = AgentLog(head_bytes=1000, tail_bytes=2000)
    logger = logging.getLogger("metalstream.bounded")
    logger.propagate = False
    logger.addHandler(agent_log)
    logger.setLevel(logging.DEBUG)
    try:
        for i in range(10_000):
            logger.info("line %05d %s", i, "x" * 50)
    finally:
        logger.removeHandler(agent_log)
    text = agent_log.text()
    assert len(text) < 3500
    assert "line 00000" in text and "line 09999" in text and "line 05000" not in text
    assert "bytes of log omitted" in text


def test_http_reporter_does_not_retry_a_rejected_result(fake_service):
    waits = []
    reporter = HttpReporter(f"{fake_service.url}/e", f"{fake_service.url}/api/v1/agent/result", "revoked-token",
                            result_attempts=5, sleep=waits.append)
    assert reporter.result(success=True, phase="finish") is False
    assert waits == [] and fake_service.state.auth_seen == ["Bearer revoked-token"]


def test_http_reporter_keeps_event_messages_within_the_service_limit(fake_service):
    reporter = _http_reporter(fake_service, Clock())
    reporter.event("mkfs", "x" * 10_000)
    (event,) = fake_service.state.events
    assert len(event["message"]) == 4096 and event["message"].endswith("...")
