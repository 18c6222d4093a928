"""The console's pages, their live parts (HTML fragments the page's script polls) and its actions."""
from __future__ import annotations

import time
from urllib.parse import urlencode

from flask import Response, abort, g, redirect, render_template, request, url_for

from metalstream.contracts import rules
from metalstream.errors import BadInput, MetalstreamError

from .. import authguard, deployments, imagestore, machines, states, tokens
from ..errors import http_status
from ..deployment_checks import check_secure_boot
from ..schemas.base import parse
from ..schemas.deployments import DeploymentCreate
from ..views.common import service
from . import bp, power, session, timeline

PAGE_SIZE = 25


# --- signing in and out --------------------------------------------------------------------------------

def _safe_next(target: str | None) -> str:
    """Where to go after signing in: a console path only (never another site)."""
    if target and target.startswith("/console/") and not target.startswith("//") and "\\" not in target:
        return target
    return url_for("console.deployments_page")


@bp.get("/sign-in")
def sign_in_page():
    return render_template("console_sign_in.html", next=_safe_next(request.args.get("next")), error=None)


@bp.post("/sign-in")
def sign_in():
    ok, why = session.same_origin(request, service().config.public_url)
    if not ok:
        abort(403, description=why)
    engine = service().engine
    authguard.check_not_blocked(engine, request.remote_addr)
    token = (request.form.get("token") or "").strip()
    caller = tokens.authenticate_api_token(engine, token) if token else None
    target = _safe_next(request.form.get("next"))
    if caller is None:
        authguard.record_failure(engine, service().config, request.remote_addr, "console")
        return render_template("console_sign_in.html", next=target,
                               error="That token is not a valid API token (or it was revoked)."), 401
    sealed = session.seal(service().secrets, session.new_session(caller["id"], caller["scope"]))
    response = redirect(target, code=303)
    response.set_cookie(session.COOKIE, sealed, max_age=session.SESSION_SECONDS, path="/console/",
                        httponly=True, samesite="Strict",
                        secure=session.is_https(request, service().config.public_url))
    return response


@bp.post("/sign-out")
def sign_out():
    response = redirect(url_for("console.sign_in_page"), code=303)
    response.delete_cookie(session.COOKIE, path="/console/", httponly=True, samesite="Strict",
                           secure=session.is_https(request, service().config.public_url))
    return response


@bp.get("/")
def home():
    return redirect(url_for("console.deployments_page"))


# --- deployments ---------------------------------------------------------------------------------------

def _deployment_filters() -> tuple[str | None, str | None, int]:
    state = request.args.get("state") or None
    if state is not None:
        rules.one_of(state, rules.STATES, "state")
    mac = (request.args.get("mac") or "").strip() or None
    if mac is not None:
        mac = rules.mac(mac, "mac")
    page = request.args.get("page", "1")
    if not page.isdigit() or not 1 <= int(page) <= 100000:
        raise BadInput("must be a page number from 1", location="page")
    return state, mac, int(page)


def _deployments_view() -> dict:
    state, mac, page = _deployment_filters()
    found = deployments.list_all(service().engine, state, mac)
    pages = max(1, -(-len(found) // PAGE_SIZE))
    shown = found[(page - 1) * PAGE_SIZE:page * PAGE_SIZE]
    query = {k: v for k, v in (("state", state), ("mac", mac)) if v}
    link = lambda n: url_for("console.deployments_page") + "?" + urlencode({**query, "page": n})  # noqa: E731
    return {"rows": shown, "state": state, "mac": mac, "page": page, "pages": pages, "total": len(found),
            "newer": link(page - 1) if page > 1 else None, "older": link(page + 1) if page < pages else None,
            "live_url": url_for("console.deployments_part") + "?" + urlencode({**query, "page": page}),
            "percent": timeline.percent, "seconds": timeline.human_seconds}


@bp.get("/deployments")
def deployments_page():
    return render_template("console_deployments.html", states=rules.STATES, **_deployments_view())


@bp.get("/deployments/part")
def deployments_part():
    return render_template("console_deployments_table.html", **_deployments_view())


def _deployment_view(dep_id: str) -> dict:
    dep = deployments.get(service().engine, dep_id, with_log=True)
    now = time.time()
    lines, skipped = timeline.log_lines(dep.pop("log"), dep["error"])
    return {"d": dep, "steps": timeline.steps(dep, now), "rate": timeline.stream_rate(dep),
            "percent": timeline.percent(dep), "lines": lines, "skipped": skipped,
            "open": dep["state"] in states.OPEN_STATES,
            "cancellable": dep["state"] in states.sources_for(states.CANCELLED),
            "bytes": timeline.human_bytes, "seconds": timeline.human_seconds}


@bp.get("/deployments/<dep_id>")
def deployment_page(dep_id: str):
    return render_template("console_deployment.html", **_deployment_view(dep_id))


@bp.get("/deployments/<dep_id>/part")
def deployment_part(dep_id: str):
    view = _deployment_view(dep_id)
    response = Response(render_template("console_deployment_live.html", **view))
    if not view["open"]:
        response.headers["X-Console-Final"] = "1"  # nothing will change: the script stops polling
    return response


@bp.get("/deployments/<dep_id>/log")
def deployment_log(dep_id: str):
    log = deployments.get(service().engine, dep_id, with_log=True)["log"]
    return Response(log or "", mimetype="text/plain")


@bp.post("/deployments/<dep_id>/cancel")
def cancel_deployment(dep_id: str):
    g.audit_target = dep_id
    deployments.cancel(service().engine, dep_id, through="the web console")
    return redirect(url_for("console.deployment_page", dep_id=dep_id), code=303)


def _deploy_form(values: dict, error: str | None = None, field: str | None = None, status: int = 200):
    engine = service().engine
    page = render_template("console_deploy.html", images=imagestore.list_images(engine),
                           machines=machines.list_all(engine), values=values, error=error, field=field)
    return page, status


@bp.get("/deploy")
def deploy_page():
    return _deploy_form({"machine": request.args.get("machine", ""), "mac": request.args.get("mac", ""),
                         "image": request.args.get("image", ""), "hostname": ""})


@bp.post("/deploy")
def deploy():
    values = {key: (request.form.get(key) or "").strip() for key in ("image", "machine", "mac", "hostname")}
    body = {key: value for key, value in values.items() if value}
    try:
        dep = start_deployment(body)
    except MetalstreamError as exc:
        location = getattr(exc, "location", None) or exc.details.get("field")
        reason = getattr(exc, "reason", None) or exc.message
        return _deploy_form(values, reason, location, http_status(exc))
    g.audit_target = dep["id"]
    return redirect(url_for("console.deployment_page", dep_id=dep["id"]), code=303)


def start_deployment(body: dict) -> dict:
    """What POST /api/v1/deployments does with a body, without an idempotency key."""
    engine = service().engine
    if "image" not in body:
        raise BadInput("choose an image", location="image")
    req = parse(DeploymentCreate, body).request()
    machine_id, req["mac"] = machines.resolve_for_deployment(engine, req.get("machine"), req["mac"])
    image = imagestore.get(engine, req["image"])
    check_secure_boot(req, None, image)
    return deployments.create(engine, req, None, None, machine_id=machine_id)[0]


# --- images and machines -------------------------------------------------------------------------------

@bp.get("/images")
def images_page():
    return render_template("console_images.html", images=imagestore.list_images(service().engine),
                           bytes=timeline.human_bytes)


def _machines_view() -> dict:
    return {"machines": machines.list_all(service().engine), "bytes": timeline.human_bytes}


@bp.get("/machines")
def machines_page():
    return render_template("console_machines.html", **_machines_view())


@bp.get("/machines/part")
def machines_part():
    return render_template("console_machines_table.html", **_machines_view())


def _machine_view(ref: str) -> dict:
    return {"m": machines.get(service().engine, ref), "bytes": timeline.human_bytes,
            "power_actions": power.ACTIONS,
            "notice": power.NOTICES.get(request.args.get("power", ""))}


@bp.get("/machines/<ref>")
def machine_page(ref: str):
    return render_template("console_machine.html", **_machine_view(ref))


@bp.get("/machines/<ref>/part")
def machine_part(ref: str):
    return render_template("console_machine_live.html", **_machine_view(ref))


@bp.post("/machines/<ref>/power")
def machine_power(ref: str):
    action = request.form.get("action", "")
    if action not in power.ACTIONS:
        raise BadInput(f"must be one of {', '.join(power.ACTIONS)}", location="action")
    machine = machines.get(service().engine, ref)
    g.audit_target = machine["id"]
    power.act(machine["id"], action)
    return redirect(url_for("console.machine_page", ref=machine["id"], power=action), code=303)

