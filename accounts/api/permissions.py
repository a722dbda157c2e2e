"""DRF permissions that ask the policies of accounts/policies.py, like the Django admin does."""

from __future__ import annotations

from typing import Any

from rest_framework import permissions
from rest_framework.request import Request
from rest_framework.views import APIView

from accounts.app_settings import step_up_max_age
from accounts.exceptions import ReauthenticationRequired
from accounts.policies import policy_allows
from accounts.selectors.mfa import authentication_records, device_session_records, reauthenticated_recently
from accounts.tokens import SESSION_CLAIM


class PolicyPermission(permissions.BasePermission):
    """Allow a view's action only when the policy named for it allows the caller.

    The view declares `policy_permissions = {"list": "accounts.list_users", ...}`, one entry per
    action; an action it does not name is denied, like a permission the policies do not know.
    Detail actions are decided per object (`has_object_permission`, with the object as the
    rule's target); the others by the rule without a target. Querysets should already hide what
    the caller may not know exists, so that it is a 404 rather than a 403.
    """

    def _permission(self, view: APIView) -> str | None:
        action = getattr(view, "action", None) or (view.request.method or "").lower()
        return getattr(view, "policy_permissions", {}).get(action)

    def has_permission(self, request: Request, view: APIView) -> bool:
        if not (request.user and request.user.is_authenticated):
            return False
        action_map = getattr(view, "action_map", None)
        if action_map is not None and (request.method or "").lower() not in action_map:
            return True  # no handler: the view answers 405 (OPTIONS: its metadata, no data)
        permission = self._permission(view)
        if permission is None:
            return False
        if getattr(view, "detail", False):
            return True  # decided per object, in has_object_permission
        return policy_allows(request.user, permission)

    def has_object_permission(self, request: Request, view: APIView, obj: Any) -> bool:
        permission = self._permission(view)
        return permission is not None and policy_allows(request.user, permission, obj)


def step_up_satisfied(request: Request) -> bool:
    """The caller re-authenticated (password or second factor asked again) recently enough.

    A first-party JWT reads the records of its device's sign-in session; a browser session its
    own. An OAuth access token never does: a third-party application cannot prove that the user
    is at the keyboard, so it is sent back through sign-in (RFC 9470).
    """
    token = request.auth
    if hasattr(token, "get") and token.get(SESSION_CLAIM):
        return reauthenticated_recently(
            device_session_records(device_session_id=str(token.get(SESSION_CLAIM)))
        )
    if token is None:
        session = getattr(request._request, "session", None)
        return reauthenticated_recently(authentication_records(session, user_id=request.user.pk))
    return False


def step_up_required(request: Request) -> None:
    """Raise 401 `reauthentication_required` unless `step_up_satisfied`."""
    if not step_up_satisfied(request):
        raise ReauthenticationRequired(max_age=step_up_max_age())


class RecentReauthentication(permissions.BasePermission):
    """Sensitive actions: 401 `reauthentication_required` (with RFC 9470's challenge) unless the
    caller re-authenticated within ACCOUNT_REAUTHENTICATION_TIMEOUT.

    List it after the permissions that decide whether the caller may act at all: on a detail
    action it asks only once the object is known and allowed, so a caller who may not act gets
    their 404 or 403, never an invitation to re-authenticate for nothing.
    """

    def has_permission(self, request: Request, view: APIView) -> bool:
        if not (request.user and request.user.is_authenticated):
            return False
        if not getattr(view, "detail", False):
            step_up_required(request)
        return True

    def has_object_permission(self, request: Request, view: APIView, obj: Any) -> bool:
        step_up_required(request)
        return True
