"""The dashboard's mutations: each a POST with the session's CSRF token from a page of
the same origin, allowed to admin sessions only (403 otherwise), answered with a
redirect back (303) carrying a message. Input is checked before anything is called,
and each action is one Runtime call, so a refused one changes nothing."""

from __future__ import annotations

import json
import tomllib
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs, quote

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from shepherd.runtime.http.api import read_body, status_of
from shepherd.runtime.http.auth import AuthError
from shepherd.runtime.http.ui.render import Ui, base_of
from shepherd.runtime.http.ui.session import Session, csrf_ok, same_origin
from shepherd.runtime.jobs import job_from_data
from shepherd.store.bounds import TOO_DEEP
from shepherd.store.errors import ConfigError

__all__ = ["ACTIONS", "login", "logout"]

Form = dict[str, list[str]]
Action = Callable[[Ui, Request, Session, Form], Awaitable[str]]


async def form_of(ui: Ui, request: Request) -> Form:
    data = await read_body(request, ui.ctx.config.max_body)
    return parse_qs(data.decode("utf-8", "replace"), keep_blank_values=True)


def one(form: Form, key: str) -> str:
    return (form.get(key) or [""])[0]


def back(request: Request, to: str, *, msg: str = "", error: str = "") -> Response:
    sep = "&" if "?" in to else "?"
    arg = f"msg={quote(msg)}" if msg else f"error={quote(error)}"
    return RedirectResponse(f"{to}{sep}{arg}", status_code=303)


def _refuse(ui: Ui, request: Request, status: int, message: str) -> Response:
    return ui.render(
        request, ui.keeper.of(request), "error.html", title="Refused", status=status, error=message
    )


def _ids(form: Form) -> list[int]:
    raw = [v for v in form.get("id", []) if v.strip()]
    if not raw:
        raise ConfigError("select at least one dead letter", field="id")
    if not all(v.strip().isdigit() for v in raw):
        raise ConfigError("expected dispatch ids", field="id")
    return [int(v) for v in raw]


# -- the actions: (ui, request, session, form) -> message ---------------------------


async def job_enable(ui: Ui, request: Request, s: Session, form: Form) -> str:
    await ui.rt.enable(request.path_params["name"])
    return f"job {request.path_params['name']} enabled"


async def job_disable(ui: Ui, request: Request, s: Session, form: Form) -> str:
    await ui.rt.disable(request.path_params["name"])
    return f"job {request.path_params['name']} disabled"


async def job_run(ui: Ui, request: Request, s: Session, form: Form) -> str:
    dispatch_id = await ui.rt.run_now(request.path_params["name"])
    return f"dispatch {dispatch_id} queued"


def parse_spec(text: str) -> dict[str, Any]:
    """A job spec from the edit form: a JSON object, else TOML (as in job files)."""
    text = text.strip()
    if not text:
        raise ConfigError("the spec is empty", field="spec")
    try:
        data = json.loads(text) if text.startswith("{") else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"not valid JSON or TOML: {exc}", field="spec") from None
    except RecursionError:
        raise ConfigError(TOO_DEEP, field="spec") from None
    if not isinstance(data, dict):
        raise ConfigError("expected an object", field="spec")
    return data


async def job_edit(ui: Ui, request: Request, s: Session, form: Form) -> str:
    name = request.path_params["name"]
    data = parse_spec(one(form, "spec"))
    if data.get("name", name) != name:
        raise ConfigError("a job cannot be renamed here; add a new one", field="name")
    await ui.rt.get_job(name)  # exists (404 otherwise)
    spec = job_from_data({**data, "name": name})  # the decode of job files
    await ui.rt.add_job(spec)  # validated as any job; the stored one kept on error
    return f"job {name} saved"


async def dead_retry(ui: Ui, request: Request, s: Session, form: Form) -> str:
    done = await ui.rt.retry_dead(_ids(form))
    return f"retried {len(done)} dead letter(s): {', '.join(map(str, done)) or 'none'}"


async def dead_purge(ui: Ui, request: Request, s: Session, form: Form) -> str:
    n = await ui.rt.purge_dead(_ids(form))
    return f"purged {n} dead letter(s)"


async def approve(ui: Ui, request: Request, s: Session, form: Form) -> str:
    a = await ui.rt.approve(int(request.path_params["id"]), by=f"ui:{s.principal.name}")
    return f"approval {a.id} approved"


async def reject(ui: Ui, request: Request, s: Session, form: Form) -> str:
    reason = one(form, "reason").strip()
    if not reason:
        raise ConfigError("a reason is required to reject", field="reason")
    a = await ui.rt.reject(int(request.path_params["id"]), reason, by=f"ui:{s.principal.name}")
    return f"approval {a.id} rejected"


async def agent_drain(ui: Ui, request: Request, s: Session, form: Form) -> str:
    await ui.rt.drain_agent(request.path_params["id"])
    return f"agent {request.path_params['id']} draining"


async def agent_undrain(ui: Ui, request: Request, s: Session, form: Form) -> str:
    await ui.rt.undrain_agent(request.path_params["id"])
    return f"agent {request.path_params['id']} ready"


# path -> (action, page to return to)
ACTIONS: dict[str, tuple[Action, str]] = {
    "/jobs/{name:path}/enable": (job_enable, "/jobs"),
    "/jobs/{name:path}/disable": (job_disable, "/jobs"),
    "/jobs/{name:path}/run": (job_run, "/jobs"),
    "/jobs/{name:path}/edit": (job_edit, "/jobs/{name}"),
    "/dead/retry": (dead_retry, "/dead"),
    "/dead/purge": (dead_purge, "/dead"),
    "/approvals/{id:int}/approve": (approve, "/approvals"),
    "/approvals/{id:int}/reject": (reject, "/approvals"),
    "/agents/{id}/drain": (agent_drain, "/agents"),
    "/agents/{id}/undrain": (agent_undrain, "/agents"),
}


def mutation(ui: Ui, action: Action, to: str) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        session = ui.keeper.of(request)
        if session is None:
            return _refuse(ui, request, 401, "log in first")
        if not same_origin(request):
            return _refuse(ui, request, 403, "cross-origin request refused")
        form = await form_of(ui, request)
        if not csrf_ok(session, one(form, "csrf")):
            return _refuse(ui, request, 403, "missing or wrong CSRF token")
        if not session.can_write:
            return _refuse(ui, request, 403, "this session is read-only")
        target = base_of(request) + to.format(**request.path_params)
        try:
            msg = await action(ui, request, session, form)
        except Exception as exc:  # every refusal goes back to the page, named
            status, message, fld = status_of(exc)
            if status >= 500:
                raise
            text = f"{fld}: {message}" if fld and not message.startswith(fld) else message
            if action is job_edit:
                return back(request, target + f"?spec={quote(one(form, 'spec'))}", error=text)
            return back(request, target, error=text)
        return back(request, target, msg=msg)

    return endpoint


async def login(ui: Ui, request: Request) -> Response:
    if not same_origin(request):
        return _refuse(ui, request, 403, "cross-origin request refused")
    form = await form_of(ui, request)
    nxt = one(form, "next")
    base = base_of(request)
    if not nxt.startswith(base) or nxt.startswith("//"):
        nxt = base
    try:
        session = ui.keeper.login(one(form, "token"))
    except AuthError as exc:
        return ui.render(
            request,
            None,
            "login.html",
            title="Log in",
            status=exc.status,
            error=exc.message,
            next=nxt,
            open=False,
        )
    response = RedirectResponse(nxt, status_code=303)
    ui.keeper.set_cookie(response, request, session)
    return response


async def logout(ui: Ui, request: Request) -> Response:
    session = ui.keeper.of(request)
    if session is not None:
        if not same_origin(request):
            return _refuse(ui, request, 403, "cross-origin request refused")
        form = await form_of(ui, request)
        if not csrf_ok(session, one(form, "csrf")):
            return _refuse(ui, request, 403, "missing or wrong CSRF token")
    response = RedirectResponse(base_of(request) + "/login", status_code=303)
    ui.keeper.clear_cookie(response, request)
    return response
