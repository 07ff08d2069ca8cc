"""Who is calling: the same authentication as Airflow's own API, required on every route.

Airflow 3.3 mounts plugin apps without any authentication, so the app depends on
``authorize`` globally. The caller is whoever Airflow's auth manager says the JWT belongs to —
from an ``Authorization: Bearer`` header (the token ``/auth/token`` hands out) or from the UI's
``_token`` session cookie. No or a bad token: 401. Changing something (any method but
GET/HEAD/OPTIONS) needs the right to edit DAGs (``is_authorized_dag(method="PUT")``): the
simple auth manager's USER/OP/ADMIN and FAB's User/Op/Admin have it, a viewer does not — unlike
the custom-view check, which every viewer passes whatever the method.

Airflow is imported only when a request is checked (the plugin module is imported before the
auth manager exists).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
COOKIE = "_token"  # airflow.api_fastapi.auth.managers.base_auth_manager.COOKIE_NAME_JWT_TOKEN

_bearer = HTTPBearer(auto_error=False, description="a JWT from Airflow's /auth/token (or the UI's _token cookie)")


def _auth_manager():
    from airflow.api_fastapi.app import get_auth_manager

    return get_auth_manager()


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail, headers={"WWW-Authenticate": "Bearer"})


async def current_user(request: Request,
                       credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> Any:
    """The Airflow user of this request; 401 without a valid token."""
    from jwt import InvalidTokenError

    if credentials is not None and credentials.scheme.lower() == "bearer":
        token = credentials.credentials
    else:
        token = request.cookies.get(COOKIE)
    if not token:
        raise _unauthorized("not authenticated: send Airflow's JWT as 'Authorization: Bearer <token>' "
                            "(POST /auth/token) or sign in to the Airflow UI")
    try:
        return await _auth_manager().get_user_from_token(token)
    except InvalidTokenError:
        raise _unauthorized("invalid or expired token: get a new one from /auth/token") from None


CurrentUser = Annotated[Any, Depends(current_user)]


def may_change(user) -> bool:
    """Whether ``user`` may change what elearn holds (save, promote, roll back …)."""
    return bool(_auth_manager().is_authorized_dag(method="PUT", user=user))


async def authorize(request: Request, user: CurrentUser) -> None:
    """The app-wide dependency: every route needs a user, every change a user who may change things."""
    request.state.elearn_user = user
    if request.method not in READ_METHODS and not may_change(user):
        raise HTTPException(status.HTTP_403_FORBIDDEN,
                            f"user {user_name(user)!r} may only read: changing models needs a role that may edit "
                            f"DAGs (User, Op or Admin)")


def user_name(user) -> str:
    get_name = getattr(user, "get_name", None)
    return get_name() if callable(get_name) else str(user)
