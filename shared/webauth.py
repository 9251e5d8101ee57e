"""API keys on read endpoints and their browser pages (monitoring, the model registry).

Reads need a key of the platform's one registry (shared/keys.py) of role ``viewer`` or above,
from ``X-API-Key``, ``Authorization: Bearer`` or, for pages a browser opens, the cookie
``llmops_key`` that the login form sets. A page asked for without a live key answers 401 (403
for a key whose role is too low) with that form as its body; ``POST <prefix>/login`` checks
the key, sets the cookie (HttpOnly, SameSite=Strict) and sends the browser back to the page.

The cookie is honoured by reads only (``GET``): changes (approvals, promotions) keep asking
for the key in a header, so a page of another site cannot make a browser change anything.
"""

from __future__ import annotations

import html
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from shared.http import read_body
from shared.keys import ApiPrincipal, KeyDeniedError, KeyRegistry, presented_key

COOKIE = "llmops_key"
READ_ROLE = "viewer"
LOGIN_BODY_LIMIT = 4096  # a key and a path


def read_key(request: Request, *, cookie: bool = True) -> str | None:
    """The key a request carries: ``X-API-Key``, ``Authorization: Bearer``, else (reads
    only) the login cookie."""
    key = presented_key(request.headers.get("authorization"), request.headers.get("x-api-key"))
    if key is None and cookie:
        key = request.cookies.get(COOKIE) or None
    return key


def require_read(keys: KeyRegistry, request: Request, role: str = READ_ROLE) -> ApiPrincipal:
    """The caller of a read: a live key of ``role`` or above (``KeyDeniedError``: 401, 403)."""
    return keys.require(None, read_key(request), role)


def _safe_next(target: str | None, home: str) -> str:
    """Only a path of this site (no scheme, no host, no backslash): never an open redirect."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return home
    return target


def login_page(action: str, target: str, message: str, status: int = 401) -> HTMLResponse:
    """A small form asking for an API key; posting it to ``action`` returns to ``target``."""
    body = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>llmops · API key</title>
<style>body{{font-family:system-ui,sans-serif;margin:4em auto;max-width:32em;color:#222}}
input{{width:100%;padding:.4em;margin:.4em 0}}</style></head>
<body><h1>API key</h1><p id="message">{html.escape(message)}</p>
<form method="post" action="{html.escape(action)}">
<label for="key">A key of role {READ_ROLE} or above
(`llmops keys create NAME --role {READ_ROLE}`)</label>
<input id="key" name="key" type="password" autocomplete="off" required>
<input name="next" type="hidden" value="{html.escape(target)}">
<button type="submit">Open</button></form></body></html>"""
    return HTMLResponse(body, status_code=status)


def page_denied(request: Request, action: str, denied: KeyDeniedError) -> HTMLResponse:
    """What a page answers without a live key: the login form, status 401 or 403."""
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return login_page(action, target, denied.message, denied.status)


async def login(
    request: Request, keys: KeyRegistry, *, action: str, home: str, cookie_path: str = "/"
) -> Response:
    """``POST`` of the login form (``key``, ``next``): sets the cookie and goes back to
    ``next`` (a path of this site), or answers the form again with why (401, 403)."""
    text = (await read_body(request, LOGIN_BODY_LIMIT)).decode("utf-8", "replace")
    try:
        fields = parse_qs(text, max_num_fields=4)
    except ValueError:
        return login_page(action, home, "not a login form (key, next)", 422)
    key = (fields.get("key") or [""])[0].strip()
    target = _safe_next((fields.get("next") or [""])[0], home)
    try:
        keys.require(None, key or None, READ_ROLE)
    except KeyDeniedError as denied:
        return login_page(action, target, denied.message, denied.status)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(COOKIE, key, httponly=True, samesite="strict", path=cookie_path)
    return response
