"""The login page (Vietnamese, with English beside it; a plain HTML form, no script) and the
web logout. The form posts to ``/login``, which sets the session cookie and sends the browser on
to ``next`` (a path on this site only)."""

import html
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from fleet.api.deps import SessionDep, StateDep
from fleet.auth.deps import CurrentUser
from fleet.auth.login import LoginIn, authenticate, clear_cookie, end_session, login_form, safe_next, set_cookie

router = APIRouter(include_in_schema=False)

_PAGE = """<!doctype html>
<html lang="vi">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Đăng nhập – Sohoa</title>
<style>
  body { font-family: "Noto Sans", "DejaVu Sans", system-ui, sans-serif; background: #f6f7f9; color: #1d2733;
         display: flex; justify-content: center; margin: 0; padding: 3rem 1rem; }
  main { background: #fff; border: 1px solid #e3e6ea; border-radius: .5rem; padding: 1.5rem 2rem; width: 22rem; }
  h1 { font-size: 1.3rem; margin: 0 0 .2rem; }
  .en { color: #5b6773; font-size: .85rem; font-weight: normal; }
  label { display: block; margin: 1rem 0 .3rem; font-weight: 600; }
  input { width: 100%; box-sizing: border-box; padding: .5rem; font-size: 1rem; border: 1px solid #b8c0c8;
          border-radius: .3rem; }
  button { margin-top: 1.3rem; width: 100%; padding: .6rem; font-size: 1rem; font-weight: 600; color: #fff;
           background: #1d5fa8; border: 0; border-radius: .3rem; cursor: pointer; }
  .error { color: #8e1c17; background: #fde2e1; padding: .5rem .7rem; border-radius: .3rem; margin: 1rem 0 0; }
</style>
</head>
<body>
<main>
<h1>Đăng nhập <span class="en">(Log in)</span></h1>
<p class="en">Sohoa – quản lý thiết bị số hóa hồ sơ (fleet manager)</p>
__ERROR__
<form method="post" action="/login">
  <input type="hidden" name="next" value="__NEXT__">
  <label for="name">Tên đăng nhập <span class="en">(user name)</span></label>
  <input id="name" name="name" autocomplete="username" required maxlength="64" autofocus>
  <label for="password">Mật khẩu <span class="en">(password)</span></label>
  <input id="password" name="password" type="password" autocomplete="current-password" required maxlength="1024">
  <button type="submit">Đăng nhập · Log in</button>
</form>
</main>
</body>
</html>
"""

_ERRORS = {
    401: "Sai tên đăng nhập hoặc mật khẩu. <span class=\"en\">(Wrong user name or password.)</span>",
    429: "Đăng nhập sai quá nhiều lần, vui lòng thử lại sau {wait} giây. "
         "<span class=\"en\">(Too many failed logins: try again in {wait} s.)</span>",
    422: "Vui lòng nhập tên đăng nhập và mật khẩu. <span class=\"en\">(Enter your user name and password.)</span>",
}


def _page(next_path: str, status: int = 200, error: str | None = None) -> HTMLResponse:
    body = _PAGE.replace("__NEXT__", html.escape(safe_next(next_path), quote=True))
    body = body.replace("__ERROR__", f'<p class="error" role="alert">{error}</p>' if error else "")
    return HTMLResponse(body, status_code=status, headers={"Cache-Control": "no-store"})


@router.get("/login", response_class=HTMLResponse)
def login_page(next: Annotated[str, Query(max_length=2000)] = "/") -> HTMLResponse:
    return _page(next)


async def _form_or_none(request: Request) -> LoginIn | None:
    try:
        return await login_form(request)
    except HTTPException:
        return None


@router.post("/login", response_class=HTMLResponse)
def login_submit(request: Request, state: StateDep,
                 form: Annotated[LoginIn | None, Depends(_form_or_none)]) -> Response:
    if form is None:
        return _page("/", 422, _ERRORS[422])
    try:
        _, token, _ = authenticate(request, state, form)
    except HTTPException as exc:
        wait = (exc.headers or {}).get("Retry-After", "")
        message = _ERRORS.get(exc.status_code, _ERRORS[401]).format(wait=html.escape(wait))
        return _page(form.next or "/", exc.status_code, message)
    response = RedirectResponse(safe_next(form.next), status_code=303)
    set_cookie(response, state.config.auth, token)
    return response


@router.post("/logout")
def logout_submit(request: Request, user: CurrentUser, state: StateDep, session: SessionDep) -> Response:
    """The logout button of the web pages: end the session, back to the login page."""
    end_session(session, request, user)
    response = RedirectResponse("/login", status_code=303)
    clear_cookie(response, state.config.auth)
    return response
