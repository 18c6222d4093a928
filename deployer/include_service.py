"""The installer's resolver of deferred `%include`s: the service's kickstart front end merges the texts the %pre
scripts wrote (the installer has no pykickstart). POST /api/v1/agent/storage with the agent token."""
from __future__ import annotations

import requests

from metalstream.contracts.deployspec import DeferredInclude, DeploySpec
from metalstream.errors import BadInput, OperationFailed

from .deferred import Resolver
from .retry import answer_with_backoff
from .tls import Verify

STORAGE_PATH = "/api/v1/agent/storage"


def service_resolver(session: requests.Session, server: str, *, verify: Verify, wait: float = 120.0) -> Resolver:
    url = server.rstrip("/") + STORAGE_PATH

    def resolve(spec: DeploySpec, included: list[tuple[DeferredInclude, str]]) -> DeploySpec:
        body = {"includes": [{"path": i.path, "line": i.line, "text": text} for i, text in included]}
        response = answer_with_backoff(lambda: session.post(url, json=body, timeout=60, verify=verify), url,
                                       "merge the %include storage commands at", wait=wait, verify=verify)
        try:
            answer = response.json()
        except ValueError:
            answer = {}
        if response.status_code == 400:
            raise BadInput(answer.get("error") or response.text[:300], location=answer.get("field"))
        if response.status_code != 200 or not isinstance(answer.get("storage"), dict):
            raise OperationFailed(f"POST {url}: HTTP {response.status_code}: {response.text[:300].strip()}")
        return DeploySpec.from_dict(answer["storage"], location="storage from the service")

    return resolve
