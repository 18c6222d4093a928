"""A small real HTTP server that answers like a Redfish BMC with one system (for the power tests).

It keeps the system's power state and boot override, records every request, and can be told to
answer errors: `fail_with = (500, "message")` for every request, `fail_actions_with` for POSTs to
the reset action and PATCHes only. It checks HTTP basic auth against its username and password.
"""
from __future__ import annotations

import base64
import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SYSTEM = "/redfish/v1/Systems/437XR1138R2"
RESET_TYPES = ["On", "ForceOff", "GracefulShutdown", "ForceRestart", "PushPowerButton"]


class RedfishStub:
    def __init__(self, username: str = "admin", password: str = "pw", *, tls=None):
        self.username = username
        self.password = password
        self.power = "Off"
        self.boot = {"BootSourceOverrideTarget": "None", "BootSourceOverrideEnabled": "Disabled"}
        self.requests: list[tuple[str, str, dict | None]] = []  # (method, path, json body)
        self.fail_with: tuple[int, str] | None = None
        self.fail_actions_with: tuple[int, str] | None = None
        self.hang = threading.Event()  # set: every request waits until `release` is set
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.scheme = "http"
        if tls is not None:  # a lab.tls KeyPair: serve HTTPS with it
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(tls.cert, tls.key)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            self.scheme = "https"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.server.server_address[1]}"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> "RedfishStub":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()

    def actions(self) -> list[tuple[str, dict | None]]:
        """The POSTs and PATCHes the stub received, in order: (method, body)."""
        return [(m, body) for m, path, body in self.requests if m in ("POST", "PATCH") and path.startswith(SYSTEM)]

    def _document(self, path: str) -> dict | None:
        if path in ("/redfish/v1", "/redfish/v1/"):
            return {"@odata.id": "/redfish/v1/", "Id": "RootService", "RedfishVersion": "1.6.0",
                    "Systems": {"@odata.id": "/redfish/v1/Systems"}}
        if path == "/redfish/v1/Systems":
            return {"@odata.id": path, "Members@odata.count": 1, "Members": [{"@odata.id": SYSTEM}]}
        if path == SYSTEM:
            return {"@odata.id": SYSTEM, "Id": SYSTEM.rsplit("/", 1)[1], "PowerState": self.power,
                    "Boot": {**self.boot, "BootSourceOverrideTarget@Redfish.AllowableValues": ["Pxe", "Hdd", "None"]},
                    "Actions": {"#ComputerSystem.Reset": {
                        "target": f"{SYSTEM}/Actions/ComputerSystem.Reset",
                        "ResetType@Redfish.AllowableValues": RESET_TYPES}}}
        return None

    def _apply(self, method: str, path: str, body: dict) -> int:
        if method == "POST" and path == f"{SYSTEM}/Actions/ComputerSystem.Reset":
            reset = body.get("ResetType")
            if reset in ("On", "ForceOn"):
                self.power = "On"
            elif reset in ("ForceOff", "GracefulShutdown"):
                self.power = "Off"
            elif reset == "ForceRestart":
                if self.power != "On":
                    return 409
            else:
                return 400
            return 204
        if method == "PATCH" and path == SYSTEM:
            self.boot.update({k: v for k, v in body.get("Boot", {}).items() if k.startswith("BootSourceOverride")})
            return 204
        return 405

    def _handler(self):
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _answer(self, status: int, document: dict | None = None) -> None:
                body = json.dumps(document).encode() if document is not None else b""
                self.send_response(status)
                if body:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _error(self, status: int, message: str) -> None:
                self._answer(status, {"error": {"code": "Base.1.0.GeneralError", "message": message,
                                                "@Message.ExtendedInfo": [{"Message": message,
                                                                           "Severity": "Critical"}]}})

            def _authorized(self) -> bool:
                expected = base64.b64encode(f"{stub.username}:{stub.password}".encode()).decode()
                return self.headers.get("Authorization") == f"Basic {expected}"

            def _handle(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                path = self.path.split("?")[0]
                with stub.lock:
                    stub.requests.append((method, path, body))
                if stub.hang.is_set():
                    stub.release.wait(30)
                if stub.fail_with:
                    return self._error(*stub.fail_with)
                if path.rstrip("/") != "/redfish/v1" and not self._authorized():
                    return self._error(401, "Invalid username or password for this BMC")
                if method == "GET":
                    document = stub._document(path)
                    return self._answer(200, document) if document else self._error(404, f"no resource {path}")
                if stub.fail_actions_with:
                    return self._error(*stub.fail_actions_with)
                with stub.lock:
                    status = stub._apply(method, path, body or {})
                return self._answer(status) if status < 400 else self._error(status, f"{method} {path} refused")

            def do_GET(self) -> None:
                self._handle("GET")

            def do_POST(self) -> None:
                self._handle("POST")

            def do_PATCH(self) -> None:
                self._handle("PATCH")

            def do_DELETE(self) -> None:
                self._handle("DELETE")

        return Handler
