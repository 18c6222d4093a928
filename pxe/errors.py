"""The service's typed errors and the HTTP status each answers with.

The core's errors (metalstream.errors) carry exit codes for the command line; how they map to
HTTP is decided here: BadInput is a 400, a ServiceError carries its own status, anything else
that escapes is a 500.
"""
from __future__ import annotations

from metalstream.errors import BadInput, MetalstreamError


class ServiceError(MetalstreamError):
    http_status = 500


class Unauthorized(ServiceError):
    http_status = 401


class Forbidden(ServiceError):
    http_status = 403


class NotFound(ServiceError):
    http_status = 404


class Conflict(ServiceError):
    http_status = 409


class TooManyRequests(ServiceError):
    http_status = 429

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.headers = {"Retry-After": str(retry_after)}


class Unavailable(ServiceError):
    http_status = 501


def http_status(exc: MetalstreamError) -> int:
    if isinstance(exc, ServiceError):
        return exc.http_status
    if isinstance(exc, BadInput):
        return 400
    return 500
