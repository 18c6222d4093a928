"""The REST API's operations, declared: path, method, summary, the request model, the query model and the
answers (models from pxe.schemas). pxe.openapi makes the document from this table; a test checks it covers
every route."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from .schemas.agent import Event, EventAccepted, MergedStorage, Result, ResultAccepted, StorageIncludes
from .schemas.common import BmcFailure, Error
from .schemas.deployments import Deployment, DeploymentCreate, DeploymentFilters, DeploymentList
from .schemas.images import Image, ImageAdd, ImageList
from .schemas.inspection import InspectionAccepted, InspectionReport
from .schemas.machines import Machine, MachineCreate, MachineFilters, MachineList, MachinePatch
from .schemas.meta import AuditLog, AuditQuery, DeployPlan, OpenApiDocument
from .schemas.power import PowerRequest, PowerState
from .schemas.uploads import ImageUpload, ImageUploadCreate, ImageUploadList
from .schemas.tokens import TokenCreate, TokenCreated, TokenList
from .schemas.webhooks import (DeliveryQuery, Webhook, WebhookCreate, WebhookCreated, WebhookDeliveryList,
                               WebhookList, WebhookPatch)

TEXT = "text/plain"
ADMIN_ONLY_TAGS = ("tokens", "audit")


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    summary: str
    tag: str
    ok: dict[str, Any]  # status → response model, TEXT, or None (no body)
    body: type[BaseModel] | None = None
    conflicts: bool = False  # answers 409
    agent: bool = False  # the agent's token, not an API token
    query: type[BaseModel] | None = None  # the query parameters, as the view parses them
    params: tuple[dict, ...] = ()  # headers
    path_doc: str | None = None
    more: dict[str, type[BaseModel]] = field(default_factory=dict)  # other answers (502 ...)
    headers: dict[str, dict] = field(default_factory=dict)  # status → the headers it carries
    raw_body: str | None = None  # a body of this media type instead of a JSON `body`

    def path_names(self) -> list[str]:
        return re.findall(r"{(\w+)}", self.path)

    def answers(self) -> dict[str, Any]:
        errors = ["400", "401", "429"]  # 400: a body, parameter, path part or header the rules refuse
        if not self.agent and (self.method != "get" or self.tag in ADMIN_ONLY_TAGS):
            errors.append("403")
        if self.path_names():
            errors.append("404")
        if self.conflicts:
            errors.append("409")
        if self.body is not None or self.raw_body:
            errors.append("413")
        return {**self.ok, **{status: Error for status in sorted(errors)}, **self.more}

    def parameters(self) -> tuple[dict, ...]:
        """The query parameters (the query model's fields), then the headers."""
        return (*query_parameters(self.query), *self.params)

    def models(self) -> set[type[BaseModel]]:
        answers = [answer for answer in self.answers().values() if isinstance(answer, type)]
        return {*answers, *([self.body] if self.body else [])}


def query_parameters(model: type[BaseModel] | None) -> tuple[dict, ...]:
    """A query model's fields as optional query parameters: the field's schema, its description beside it."""
    properties = model.model_json_schema()["properties"] if model else {}
    return tuple({"name": name, "in": "query", "required": False,
                  "schema": {key: value for key, value in schema.items() if key != "description"},
                  **({"description": schema["description"]} if "description" in schema else {})}
                 for name, schema in properties.items())


_MACHINE = "the machine's id or name"
_UPLOAD = "the upload's id (32 hex digits)"
_OFFSET = {"Upload-Offset": {"description": "bytes committed so far: the next chunk starts here",
                             "schema": {"type": "integer", "minimum": 0}},
           "Upload-Length": {"description": "the image's size", "schema": {"type": "integer", "minimum": 1}}}
_LOCATION = {"Location": {"description": "the upload's (or, when done, the image's) URL", "schema": {"type": "string"}}}
_CONTENT_RANGE = {"name": "Content-Range", "in": "header", "required": True,
                  "schema": {"type": "string", "pattern": r"^bytes \d+-\d+/(\d+|\*)$"}}
_IDEMPOTENCY_KEY = {"name": "Idempotency-Key", "in": "header", "required": False,
                    "schema": {"type": "string", "maxLength": 200}}

OPERATIONS: tuple[Operation, ...] = (
    Operation("get", "/api/v1/images", "List images", "images", {"200": ImageList}),
    Operation("post", "/api/v1/images", "Register an image from a manifest on the server", "images",
              {"201": Image}, body=ImageAdd, conflicts=True),
    Operation("get", "/api/v1/images/{name}", "Show an image", "images", {"200": Image}),
    Operation("delete", "/api/v1/images/{name}", "Delete an image (409 while an open deployment uses it)", "images",
              {"204": None}, conflicts=True),
    Operation("get", "/api/v1/deployments", "List deployments (filters: state, mac)", "deployments",
              {"200": DeploymentList}, query=DeploymentFilters),
    Operation("post", "/api/v1/deployments", "Create a deployment (idempotent with Idempotency-Key: a replay "
              "answers 200)", "deployments", {"201": Deployment, "200": Deployment}, body=DeploymentCreate,
              conflicts=True, params=(_IDEMPOTENCY_KEY,)),
    Operation("get", "/api/v1/deployments/{dep_id}", "Show a deployment with its events", "deployments",
              {"200": Deployment}),
    Operation("delete", "/api/v1/deployments/{dep_id}", "Cancel a deployment", "deployments", {"200": Deployment},
              conflicts=True),
    Operation("get", "/api/v1/deployments/{dep_id}/log", "The agent's log (text/plain)", "deployments",
              {"200": TEXT}),
    Operation("get", "/api/v1/tokens", "List API tokens (admin)", "tokens", {"200": TokenList}),
    Operation("post", "/api/v1/tokens", "Create an API token (admin)", "tokens", {"201": TokenCreated},
              body=TokenCreate),
    Operation("delete", "/api/v1/tokens/{token_id}", "Revoke an API token (admin)", "tokens", {"204": None}),
    Operation("get", "/api/v1/audit", "The audit log of mutating API calls, newest first (admin)", "audit",
              {"200": AuditLog}, query=AuditQuery),
    Operation("get", "/api/v1/agent/plan", "The deploy plan (metalstream-plan/1.x)", "agent", {"200": DeployPlan},
              agent=True),
    Operation("post", "/api/v1/agent/events", "Report progress", "agent", {"200": EventAccepted}, body=Event,
              agent=True),
    Operation("post", "/api/v1/agent/result", "Report the final result", "agent", {"200": ResultAccepted},
              body=Result, agent=True),
    Operation("post", "/api/v1/agent/storage", "Merge the storage commands of the deferred %includes the %pre "
              "scripts wrote (read on the machine) into the deployment's storage", "agent", {"200": MergedStorage},
              body=StorageIncludes, agent=True),
    Operation("post", "/api/v1/agent/inspection", "Report this machine's hardware facts (inspection token: enlist "
              "or refresh; agent token: refresh the deployment's machine)", "agent", {"200": InspectionAccepted},
              body=InspectionReport, agent=True, conflicts=True),
    Operation("get", "/api/v1/openapi.json", "This document", "meta", {"200": OpenApiDocument}),
    Operation("get", "/api/v1/machines", "List machines (filters: state, tag, mac, and facts)", "machines",
              {"200": MachineList}, query=MachineFilters),
    Operation("post", "/api/v1/machines", "Register a machine (409 when its name or a MAC is taken)", "machines",
              {"201": Machine}, body=MachineCreate, conflicts=True),
    Operation("get", "/api/v1/machines/{machine_id}", "Show a machine", "machines", {"200": Machine},
              path_doc=_MACHINE),
    Operation("patch", "/api/v1/machines/{machine_id}", "Change a machine (fields given replace the stored ones; "
              "the BMC is merged)", "machines", {"200": Machine}, body=MachinePatch, conflicts=True,
              path_doc=_MACHINE),
    Operation("delete", "/api/v1/machines/{machine_id}", "Delete a machine (409 while it has an open deployment)",
              "machines", {"204": None}, conflicts=True, path_doc=_MACHINE),
    Operation("post", "/api/v1/machines/{machine_id}/power", "Switch a machine's power through its BMC, or read it "
              "(admin). 409: the machine's power is switched by hand (driver manual); 502: the BMC failed "
              "(unreachable, credentials refused, an error answer, no answer in time)", "machines",
              {"200": PowerState}, body=PowerRequest, conflicts=True, path_doc=_MACHINE, more={"502": BmcFailure}),
    Operation("get", "/api/v1/webhooks", "List webhook subscriptions", "webhooks", {"200": WebhookList}),
    Operation("post", "/api/v1/webhooks", "Subscribe a URL to events (admin); the answer carries the signing "
              "secret, once", "webhooks", {"201": WebhookCreated}, body=WebhookCreate),
    Operation("get", "/api/v1/webhooks/{webhook_id}", "Show a subscription", "webhooks", {"200": Webhook}),
    Operation("patch", "/api/v1/webhooks/{webhook_id}", "Change a subscription (admin)", "webhooks",
              {"200": Webhook}, body=WebhookPatch),
    Operation("delete", "/api/v1/webhooks/{webhook_id}", "Delete a subscription and its deliveries (admin)",
              "webhooks", {"204": None}),
    Operation("get", "/api/v1/webhooks/{webhook_id}/deliveries", "A subscription's deliveries, newest first: "
              "state, attempts, last answer, next attempt", "webhooks", {"200": WebhookDeliveryList},
              query=DeliveryQuery),
    Operation("get", "/api/v1/image-uploads", "Open uploads (unfinished, not expired)", "images",
              {"200": ImageUploadList}),
    Operation("post", "/api/v1/image-uploads", "Start uploading an image (admin): its manifest; answers the upload "
              "(201), or the open upload of the same name, size and sha256 to resume (200). 409: the name is "
              "registered or being uploaded with other bytes", "images", {"201": ImageUpload, "200": ImageUpload},
              body=ImageUploadCreate, conflicts=True,
              headers={"201": {**_OFFSET, **_LOCATION}, "200": {**_OFFSET, **_LOCATION}}),
    Operation("get", "/api/v1/image-uploads/{upload_id}", "An upload's state: the committed offset (also in "
              "Upload-Offset; HEAD gives the headers alone)", "images", {"200": ImageUpload}, path_doc=_UPLOAD,
              headers={"200": _OFFSET}),
    Operation("put", "/api/v1/image-uploads/{upload_id}", "Send the next chunk (admin): the body holds the bytes "
              "START..END of the image's tarball, `Content-Range: bytes START-END/SIZE`; START must be the committed "
              "offset (409 and Upload-Offset otherwise: a gap or an overlap), END inside the image (416 and "
              "`Content-Range: bytes */SIZE` otherwise). The last chunk checks the sha256 (400 and the upload "
              "discarded when it differs) and registers the image: 201 with `image`", "images",
              {"200": ImageUpload, "201": ImageUpload}, raw_body="application/octet-stream", conflicts=True,
              params=(_CONTENT_RANGE,), path_doc=_UPLOAD, more={"416": Error},
              headers={"200": _OFFSET, "201": {**_OFFSET, **_LOCATION},
                       "409": {"Upload-Offset": _OFFSET["Upload-Offset"]},
                       "416": {"Content-Range": {"description": "bytes */SIZE", "schema": {"type": "string"}}}}),
    Operation("delete", "/api/v1/image-uploads/{upload_id}", "Abandon an upload: its bytes are removed (admin)",
              "images", {"204": None}, path_doc=_UPLOAD),
)
