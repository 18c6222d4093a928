"""HTTP-flavoured typed errors of the service (BadInput, the 400, comes from deployer.errors)."""
from __future__ import annotations

from deployer.errors import MetalstreamError


class Unauthorized(MetalstreamError):
    http_status = 401


class Forbidden(MetalstreamError):
    http_status = 403


class NotFound(MetalstreamError):
    http_status = 404


class Conflict(MetalstreamError):
    http_status = 409


class Unavailable(MetalstreamError):
    http_status = 501
