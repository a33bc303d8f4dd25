"""What every route of the labeling app depends on: the service, the signed-in user, the path prefix.

FastAPI dependencies, kept apart from ``app`` so that the routers and the app that
includes them do not import each other.
"""

from __future__ import annotations

from fastapi import Depends, Request

from alignloop.labeling.auth import CSRF_HEADER, SESSION_COOKIE, Forbidden, User
from alignloop.labeling.service import LabelingService


async def service(request: Request) -> LabelingService:
    """The app's service object. Dependencies here are ``async`` on purpose: they are cheap (one
    primary-key read at most) and an async dependency runs inline instead of costing a thread hop."""
    return request.app.state.service


async def signed_in(request: Request) -> User:
    """The session's labeler; ``NotSignedIn`` (401 on the API, redirect on pages) without one."""
    svc: LabelingService = request.app.state.service
    user = svc.sessions.user(request.cookies.get(SESSION_COOKIE), svc.db)
    request.state.user = user
    return user


async def signed_in_csrf(request: Request) -> User:
    """``signed_in`` plus the CSRF header every state-changing API call must carry (one dependency, not two:
    this guards the per-task endpoints, where each resolved dependency costs measurable time)."""
    user = await signed_in(request)
    request.app.state.service.sessions.check_csrf(user, request.headers.get(CSRF_HEADER))
    return user


async def admin(user: User = Depends(signed_in)) -> User:
    if not user.is_admin:
        raise Forbidden("this page is for admins; ask an admin if you need access")
    return user


async def admin_csrf(request: Request, user: User = Depends(admin)) -> User:
    request.app.state.service.sessions.check_csrf(user, request.headers.get(CSRF_HEADER))
    return user


def root(request: Request) -> str:
    """The path prefix the app is served under (``serve --root-path /labels`` behind a reverse proxy that
    strips it; empty at the top of a host). Every link, form action and redirect starts with it."""
    return str(request.scope.get("root_path", "")).rstrip("/")


def app_path(request: Request) -> str:
    """The request's path inside the app, without the prefix."""
    path, prefix = request.url.path, root(request)
    return path[len(prefix) :] or "/" if prefix and path.startswith(prefix + "/") else path
