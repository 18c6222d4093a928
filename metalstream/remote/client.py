"""HTTP to the service's REST API. Every failure becomes an error naming the URL and what to do next."""
from __future__ import annotations

from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from metalstream.errors import EXIT_BAD_INPUT, BadInput, MetalstreamError, OperationFailed

from .profile import TOKEN_ENV, Target

TIMEOUT = 30.0


class ApiError(MetalstreamError):
    """The service answered with an error status; `status`, `field` and `body` are what it said."""

    def __init__(self, message: str, *, status: int, field: str | None = None, body: Any = None):
        super().__init__(message, details={"status": status, "field": field})
        self.status = status
        self.field = field
        self.body = body
        # 400/404/409: the request named something wrong or absent — bad input; the rest: the operation failed
        self.exit_code = EXIT_BAD_INPUT if status in (400, 404, 409, 413) else OperationFailed.exit_code


class Client:
    def __init__(self, target: Target, *, timeout: float = TIMEOUT, verify: bool | str = True):
        self.target = target
        self.timeout = timeout
        self.session = requests.Session()
        # A read may race the server closing an idle keep-alive connection (gunicorn closes them after 2 s,
        # the interval `watch` polls at): GET and HEAD are retried on a fresh connection, nothing else is.
        retry = Retry(total=2, connect=2, read=2, status=0, other=0, allowed_methods=frozenset({"GET", "HEAD"}),
                      backoff_factor=0.2, raise_on_status=False)
        for prefix in ("http://", "https://"):
            self.session.mount(prefix, HTTPAdapter(max_retries=retry))
        self.session.verify = verify
        self.session.headers["User-Agent"] = "metalstream-cli"
        if target.token:
            self.session.headers["Authorization"] = f"Bearer {target.token}"

    def url(self, path: str) -> str:
        return self.target.url + path

    def request(self, method: str, path: str, *, json: Any = None, params: dict | None = None,
                headers: dict | None = None, data: bytes | None = None) -> requests.Response:
        url = self.url(path)
        try:
            response = self.session.request(method, url, json=json, params=params, headers=headers, data=data,
                                            timeout=self.timeout)
        except requests.exceptions.SSLError as exc:
            raise OperationFailed(f"{method} {url}: TLS verification failed ({_reason(exc)}); check the URL, or "
                                  "trust the service's CA (REQUESTS_CA_BUNDLE=FILE)") from None
        except requests.exceptions.ConnectionError as exc:
            raise OperationFailed(f"{method} {url}: cannot connect ({_reason(exc)}); is `metalstream serve` "
                                  f"running at {self.target.url}? (URL from {self.target.url_from})") from None
        except requests.exceptions.Timeout:
            raise OperationFailed(f"{method} {url}: no answer within {self.timeout:g} s; is the service at "
                                  f"{self.target.url} overloaded or behind a firewall?") from None
        if response.status_code >= 400:
            raise self._error(method, url, response)
        return response

    def get(self, path: str, **params) -> Any:
        return self.request("GET", path, params={k: v for k, v in params.items() if v is not None}).json()

    def get_text(self, path: str) -> str:
        return self.request("GET", path).text

    def post(self, path: str, body: Any, headers: dict | None = None) -> Any:
        return self.request("POST", path, json=body, headers=headers).json()

    def delete(self, path: str) -> Any:
        response = self.request("DELETE", path)
        return response.json() if response.content else None

    def _error(self, method: str, url: str, response: requests.Response) -> ApiError:
        try:
            body = response.json()
        except ValueError:
            body = None
        said = body.get("error") if isinstance(body, dict) else None
        field = body.get("field") if isinstance(body, dict) else None
        said = said or (response.text.strip()[:200] or response.reason)
        where = f" (field {field})" if field else ""
        status = response.status_code
        if status == 401:
            source = f" from {self.target.token_from}" if self.target.token_from else ""
            hint = (f"the token{source} is missing, invalid or revoked; run `metalstream login {self.target.url}` "
                    f"or set {TOKEN_ENV} (an admin makes one with `metalstream token create` on the server)")
        elif status == 403:
            hint = "this needs an admin-scope token"
        elif status == 429:
            hint = "too many wrong tokens from this address; wait a few minutes"
        elif status >= 500:
            hint = "the service failed; see its log"
        else:
            hint = None
        message = f"{method} {url}: {status} {said}{where}" + (f"; {hint}" if hint else "")
        return ApiError(message, status=status, field=field, body=body)


def _reason(exc: Exception) -> str:
    """The innermost cause, e.g. '[Errno 111] Connection refused', not urllib3's nested repr."""
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__
    reason = getattr(exc, "reason", None) or exc
    text = str(reason)
    return text.split(": ", 1)[1] if text.startswith("<urllib3") and ": " in text else text


def require_token(target: Target) -> None:
    if not target.token:
        raise BadInput(f"no API token for {target.url}: run `metalstream login {target.url}`, set {TOKEN_ENV}, "
                       "or give --token", location="--token")
