"""Who is calling: the same authentication as Airflow's own API, required on every route, and
protection of changes against cross-site requests.

Airflow 3.3 mounts plugin apps without any authentication, so the app depends on
``authorize`` globally. The caller is whoever Airflow's auth manager says the JWT belongs to —
from an ``Authorization: Bearer`` header (the token ``/auth/token`` hands out) or from the UI's
``_token`` session cookie. No or a bad token: 401. Changing something (any method but
GET/HEAD/OPTIONS) needs the right to edit DAGs (``is_authorized_dag(method="PUT")``): the
simple auth manager's USER/OP/ADMIN and FAB's User/Op/Admin have it, a viewer does not — unlike
the custom-view check, which every viewer passes whatever the method.

A browser sends the cookie with every request to the server, also one another site makes it
send, so a change signed in by the cookie must also prove it comes from an elearn page
(``check_csrf``): the page's token in ``X-CSRF-Token`` — an HMAC of the user's id under
Airflow's ``[api] secret_key``, rendered into each page — and, where the browser says,
``Sec-Fetch-Site`` same-origin and an ``Origin`` of this server. A Bearer token is never sent
by a browser on its own, so a Bearer call (scripts, the CLI) needs none of it. ``authorize``
runs the check for every change of the app; ``CsrfProtected`` is the same check as a
dependency for a router mounted elsewhere.

Airflow is imported only when a request is checked (the plugin module is imported before the
auth manager exists).
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
COOKIE = "_token"  # airflow.api_fastapi.auth.managers.base_auth_manager.COOKIE_NAME_JWT_TOKEN
CSRF_HEADER = "X-CSRF-Token"
SAME_ORIGIN_SITES = frozenset({"same-origin", "none"})  # Sec-Fetch-Site of a page's own request, or the user's

_bearer = HTTPBearer(auto_error=False, description="a JWT from Airflow's /auth/token (or the UI's _token cookie)")


def _auth_manager():
    from airflow.api_fastapi.app import get_auth_manager

    return get_auth_manager()


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail, headers={"WWW-Authenticate": "Bearer"})


def _forbidden(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_403_FORBIDDEN, detail)


async def current_user(request: Request,
                       credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> Any:
    """The Airflow user of this request; 401 without a valid token. Records on ``request.state``
    the token (``elearn_token``, to act as this user towards Airflow's own API) and whether it
    came from the session cookie (``elearn_by_cookie``)."""
    from jwt import InvalidTokenError

    by_cookie = credentials is None or credentials.scheme.lower() != "bearer"
    token = request.cookies.get(COOKIE) if by_cookie else credentials.credentials
    if not token:
        raise _unauthorized("not authenticated: send Airflow's JWT as 'Authorization: Bearer <token>' "
                            "(POST /auth/token) or sign in to the Airflow UI")
    try:
        user = await _auth_manager().get_user_from_token(token)
    except InvalidTokenError:
        raise _unauthorized("invalid or expired token: get a new one from /auth/token") from None
    request.state.elearn_token, request.state.elearn_by_cookie = token, by_cookie
    return user


CurrentUser = Annotated[Any, Depends(current_user)]


def may_change(user) -> bool:
    """Whether ``user`` may change what elearn holds (save, release, promote, roll back …)."""
    return bool(_auth_manager().is_authorized_dag(method="PUT", user=user))


def csrf_token(user) -> str:
    """The token a page signed in as ``user`` sends back in ``X-CSRF-Token``: an HMAC of the
    user's id under Airflow's ``[api] secret_key`` (the key Airflow signs its own tokens with;
    every API server of one Airflow must share it). It stays valid while the user and the key do."""
    from airflow.api_fastapi.auth.tokens import get_signing_key

    key = get_signing_key("api", "secret_key").encode()
    return hmac.new(key, b"elearn-csrf\0" + str(user.get_id()).encode(), hashlib.sha256).hexdigest()


def _host(netloc: str) -> str:
    netloc = netloc.strip().lower()
    return netloc.removesuffix(":443").removesuffix(":80")


def _this_server(request: Request) -> set[str]:
    """host[:port] under which browsers reach this server: the Host header, a proxy's
    X-Forwarded-Host, and Airflow's ``[api] base_url``."""
    from airflow.configuration import conf

    hosts = {_host(request.headers.get("host", ""))}
    hosts |= {_host(h) for h in request.headers.get("x-forwarded-host", "").split(",") if h.strip()}
    if base_url := conf.get("api", "base_url", fallback=""):
        hosts.add(_host(urlsplit(base_url).netloc))
    return hosts - {""}


def check_csrf(request: Request, user) -> None:
    """Refuse (403) a change signed in by the session cookie that does not come from an elearn
    page of this server; a read, or a change with a Bearer token, passes untouched."""
    if request.method in READ_METHODS or not getattr(request.state, "elearn_by_cookie", True):
        return
    site = request.headers.get("sec-fetch-site")
    if site is not None and site.lower() not in SAME_ORIGIN_SITES:
        raise _forbidden(f"cross-site request refused (Sec-Fetch-Site: {site}): elearn changes come from its own "
                         f"pages, or from scripts with 'Authorization: Bearer <token>'")
    origin = request.headers.get("origin")
    if origin is not None and _host(urlsplit(origin).netloc) not in _this_server(request):
        raise _forbidden(f"request from another origin refused (Origin: {origin}): elearn changes come from its "
                         f"own pages, or from scripts with 'Authorization: Bearer <token>'")
    sent = request.headers.get(CSRF_HEADER)
    if not sent:
        raise _forbidden(f"missing {CSRF_HEADER} header: a change signed in with the Airflow session cookie must "
                         f"carry the token of the elearn page it comes from (or use 'Authorization: Bearer <token>')")
    if not hmac.compare_digest(sent.encode(), csrf_token(user).encode()):
        raise _forbidden(f"wrong {CSRF_HEADER} for user {user_name(user)!r}: reload the elearn page and try again")


async def csrf_protect(request: Request, user: CurrentUser) -> None:
    """``check_csrf`` as a dependency, for routes outside this app (``authorize`` runs it here)."""
    check_csrf(request, user)


CsrfProtected = Depends(csrf_protect)


async def authorize(request: Request, user: CurrentUser) -> None:
    """The app-wide dependency: every route needs a user; every change a user who may change
    things, and, signed in by the cookie, proof that it comes from an elearn page."""
    request.state.elearn_user = user
    if request.method in READ_METHODS:
        return
    if not may_change(user):
        raise _forbidden(f"user {user_name(user)!r} may only read: changing models needs a role that may edit "
                         f"DAGs (User, Op or Admin)")
    check_csrf(request, user)


def user_name(user) -> str:
    get_name = getattr(user, "get_name", None)
    return get_name() if callable(get_name) else str(user)
