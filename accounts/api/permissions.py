"""DRF permissions that ask the policies of accounts/policies.py, like the Django admin does."""

from __future__ import annotations

from typing import Any

from rest_framework import permissions
from rest_framework.request import Request
from rest_framework.views import APIView

from accounts.policies import policy_allows


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
