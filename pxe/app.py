"""Flask app factory: one blueprint per feature, typed errors turned into JSON answers."""
from __future__ import annotations

import logging
import time

from flask import Flask, g, jsonify, request
from werkzeug.exceptions import HTTPException

from metalstream.errors import BadInput, MetalstreamError

from . import audit, metrics
from .config import ServiceConfig
from .console import bp as console_bp
from .errors import http_status
from .render import RenderError
from .service import Service
from .views import agent, boot, deployments, files, image_uploads, images, meta, tokens
from .views import audit as audit_views
from .views import webhooks as webhook_views
from .views import machines as machine_views
from .views import power as power_views

log = logging.getLogger("metalstream.pxe")


def create_app(config: ServiceConfig, *, service: Service | None = None) -> Flask:
    app = Flask(__name__, static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = 16 * 1024 * 1024  # agent logs included
    app.json.sort_keys = False
    app.extensions["metalstream"] = service or Service.open(config)
    for blueprint in (images.bp, image_uploads.bp, files.bp, deployments.bp, boot.bp, agent.bp, tokens.bp,
                      audit_views.bp, meta.bp, machine_views.bp):
        app.register_blueprint(blueprint)
    app.register_blueprint(webhook_views.bp)
    app.register_blueprint(power_views.bp)
    app.register_blueprint(console_bp)
    _register_error_handlers(app)
    _register_request_metrics(app)
    _register_audit(app)
    return app


def error_body(message: str, field: str | None = None, **extra) -> dict:
    body = {"error": message}
    if field:
        body["field"] = field
    body.update({k: v for k, v in extra.items() if v is not None})
    return body


def _register_error_handlers(app: Flask) -> None:
    @app.errorhandler(BadInput)
    def bad_input(exc: BadInput):
        return jsonify(error_body(exc.reason, exc.location, **exc.details)), http_status(exc)

    @app.errorhandler(RenderError)
    def render_error(exc: RenderError):
        log.error("boot script not rendered: %s", exc)
        return jsonify(error_body("boot script could not be rendered; the service log says why")), 500

    @app.errorhandler(MetalstreamError)
    def typed_error(exc: MetalstreamError):
        body = error_body(exc.message, exc.details.get("field"),
                          **{k: v for k, v in exc.details.items() if k != "field"})
        return jsonify(body), http_status(exc), getattr(exc, "headers", None) or {}

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        headers = [(name, value) for name, value in exc.get_headers()  # Allow on 405, Content-Range on 416
                   if name.lower() != "content-type"]
        return jsonify(error_body(exc.description or exc.name)), exc.code, headers

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):  # includes jinja2 template errors: a 500, never a silent local boot
        log.exception("internal error on %s %s", request.method, request.path)
        return jsonify(error_body("internal error; the service log has the details")), 500


def _register_request_metrics(app: Flask) -> None:
    @app.before_request
    def start_timer():
        g.started = time.perf_counter()

    @app.after_request
    def observe(response):
        endpoint = request.url_rule.rule if request.url_rule else "unmatched"
        metrics.observe_request(request.method, endpoint, response.status_code,
                                time.perf_counter() - g.get("started", time.perf_counter()))
        return response


def _register_audit(app: Flask) -> None:
    @app.after_request
    def record(response):
        if audit.is_audited(request.method, request.path):
            rule = request.url_rule.rule if request.url_rule else request.path
            target = g.get("audit_target") or ",".join(str(v) for v in (request.view_args or {}).values()) or None
            caller = g.get("api_token")
            audit.record(app.extensions["metalstream"].engine, token_id=caller["id"] if caller else None,
                         client=request.remote_addr, action=f"{request.method} {rule}", target=target,
                         status=response.status_code)
        return response
