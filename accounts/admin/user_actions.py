"""The staff actions on selected users: the users API's services, asked of the policy per user.

Each action runs the service once per selected user the caller may act on (its own transaction),
and reports per outcome through `messages`: done, refused by the policy, refused by the service
(its `ValidationError` message), or already so. Deactivation and lock-down first show a
confirmation page that asks for the reason; resetting MFA one that asks to confirm.

Lock-down and MFA reset are step-up actions (docs/decisions/0012-mfa-and-step-up.md): they need the
staff member to have re-authenticated (password or second factor asked again) within
ACCOUNT_REAUTHENTICATION_TIMEOUT. Without that, nothing runs: they are sent to allauth's
re-authentication page, which brings them back to where they were.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, cast

from allauth.mfa.models import Authenticator
from django import forms
from django.contrib import messages
from django.contrib.admin import helpers
from django.contrib.auth import REDIRECT_FIELD_NAME
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme, urlencode

from accounts.forms.users import UserActionReasonForm
from accounts.models import User
from accounts.policies import policy_allows
from accounts.selectors.mfa import authentication_records, reauthenticated_recently
from accounts.services.mfa import user_mfa_reset
from accounts.services.moderation import (
    user_deactivate,
    user_lock_down,
    user_mark_email_verified,
    user_reactivate,
    user_resend_verification,
    user_send_password_reset,
    user_sign_out_everywhere,
)
from config.admin_pages import admin_page

# One action acts on at most this many users: the confirmation page lists them all, and each one is
# a transaction of its own.
USER_ACTION_LIMIT = 500
# Messages name at most this many users, then "and N more".
NAMES_SHOWN = 20
CONFIRMATION_TEMPLATE = "admin/accounts/user/action_confirmation.html"


@dataclass(frozen=True)
class UserAction:
    name: str
    permission: str  # the policy asked with each selected user as the target
    description: str  # in the actions menu
    label: str  # the button on the change page
    verb: str  # "You may not {verb} …"
    done: str  # "Deactivated {users}."
    run: Callable[[User, User, str], object]  # (target, actor, reason)
    needs_reason: bool = False
    # A confirmation page without a reason (an action hard to undo that the service takes no
    # reason for); `needs_reason` implies one.
    needs_confirmation: bool = False
    warning: str = ""  # on the confirmation page
    # Step-up: the staff member must have re-authenticated recently (`step_up_missing`).
    needs_step_up: bool = False
    # Users already in the state the action leads to: left alone, and reported as such.
    already: Callable[[User], bool] | None = None
    already_done: str = ""


DEACTIVATE = UserAction(
    name="deactivate_users",
    permission="accounts.deactivate_user",
    description="Deactivate selected users…",
    label="Deactivate…",
    verb="deactivate",
    done="Deactivated {users}.",
    run=lambda user, actor, reason: user_deactivate(user=user, reason=reason, actor=actor),
    needs_reason=True,
    warning="They can no longer sign in, and their tokens stop working on their next request.",
    already=lambda user: not user.is_active,
    already_done="already deactivated",
)
LOCK_DOWN = UserAction(
    name="lock_down_users",
    permission="accounts.lock_down_user",
    description="Lock down selected users (deactivate, end every session and token)…",
    label="Lock down…",
    verb="lock down",
    done="Locked down {users}.",
    run=lambda user, actor, reason: user_lock_down(user=user, reason=reason, actor=actor),
    needs_reason=True,
    warning="They are deactivated, and every device session, browser session, JWT and OAuth token "
    "they hold ends now.",
    needs_step_up=True,
)
REACTIVATE = UserAction(
    name="reactivate_users",
    permission="accounts.reactivate_user",
    description="Reactivate selected users",
    label="Reactivate",
    verb="reactivate",
    done="Reactivated {users}.",
    run=lambda user, actor, reason: user_reactivate(user=user, actor=actor),
    already=lambda user: user.is_active,
    already_done="already active",
)
SIGN_OUT_EVERYWHERE = UserAction(
    name="sign_out_users_everywhere",
    permission="accounts.sign_out_user",
    description="Sign selected users out everywhere",
    label="Sign out everywhere",
    verb="sign out",
    done="Signed {users} out everywhere.",
    run=lambda user, actor, reason: user_sign_out_everywhere(user=user, actor=actor),
)
SEND_PASSWORD_RESET = UserAction(
    name="send_password_reset",
    permission="accounts.send_password_reset",
    description="E-mail selected users a password reset link",
    label="Send password reset",
    verb="send a password reset link to",
    done="Sent a password reset link to {users}.",
    run=lambda user, actor, reason: user_send_password_reset(user=user, actor=actor),
)
RESEND_VERIFICATION = UserAction(
    name="resend_verification",
    permission="accounts.resend_verification",
    description="Resend the verification e-mail to selected users",
    label="Resend verification e-mail",
    verb="resend the verification e-mail to",
    done="Resent the verification e-mail to {users}.",
    run=lambda user, actor, reason: user_resend_verification(user=user, actor=actor),
)
MARK_EMAIL_VERIFIED = UserAction(
    name="mark_email_verified",
    permission="accounts.verify_email",
    description="Mark selected users' e-mail addresses verified",
    label="Mark e-mail verified",
    verb="verify the e-mail address of",
    done="Verified the e-mail address of {users}.",
    run=lambda user, actor, reason: user_mark_email_verified(user=user, actor=actor),
)
RESET_MFA = UserAction(
    name="reset_mfa",
    permission="accounts.reset_mfa",
    description="Reset MFA of selected users (remove every second factor, sign them out)…",
    label="Reset MFA…",
    verb="reset the MFA of",
    done="Reset the MFA of {users}.",
    run=lambda user, actor, reason: user_mfa_reset(user=user, actor=actor),
    needs_confirmation=True,
    warning="Every second factor they have (authenticator apps, security keys and passkeys, recovery "
    "codes) is removed, and they are signed out everywhere. Users whose role requires a second factor "
    "must set up a new one at their next sign-in. Do this only once you know it is really them.",
    needs_step_up=True,
    already=lambda user: not Authenticator.objects.filter(user=user).exists(),
    already_done="no second factor to reset",
)
USER_ACTIONS = (
    DEACTIVATE,
    LOCK_DOWN,
    REACTIVATE,
    SIGN_OUT_EVERYWHERE,
    SEND_PASSWORD_RESET,
    RESEND_VERIFICATION,
    MARK_EMAIL_VERIFIED,
    RESET_MFA,
)
STEP_UP_MESSAGE = (
    "{what} needs you to confirm who you are again. Nothing changed yet: re-authenticate, then {retry}."
)


def step_up_missing(request: HttpRequest) -> bool:
    """The staff member has not re-authenticated within ACCOUNT_REAUTHENTICATION_TIMEOUT.

    A recent sign-in is not enough (a stolen session is as fresh as a real one): allauth's rule,
    read from the records allauth keeps in the session.
    """
    return not reauthenticated_recently(authentication_records(request.session))


def step_up_redirect(request: HttpRequest, *, what: str, retry: str, back_to: str) -> HttpResponseRedirect:
    """Send the staff member to allauth's re-authentication page, to come back to `back_to`."""
    messages.warning(request, STEP_UP_MESSAGE.format(what=what, retry=retry))
    url = reverse("account_reauthenticate")
    return HttpResponseRedirect(f"{url}?{urlencode({REDIRECT_FIELD_NAME: back_to})}")


def users_named(users: Iterable[User]) -> str:
    """ "alice, bob", or "alice, bob, … and 12 more" past NAMES_SHOWN names."""
    names = [user.username for user in users]
    shown = ", ".join(names[:NAMES_SHOWN])
    if len(names) > NAMES_SHOWN:
        shown += f" and {len(names) - NAMES_SHOWN} more"
    return shown


def return_url(request: HttpRequest) -> str | None:
    """Where the change page's action buttons ask to come back to, if it is on this site."""
    url = request.POST.get("next", "")
    if url and url_has_allowed_host_and_scheme(
        url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return url
    return None


def user_action_run(
    model_admin: Any, request: HttpRequest, queryset: QuerySet[User], action: UserAction
) -> HttpResponse | None:
    """Run `action` on the selected users the policy lets the caller act on; report the rest."""
    actor = cast(User, request.user)
    selected = list(queryset[: USER_ACTION_LIMIT + 1])
    if len(selected) > USER_ACTION_LIMIT:
        model_admin.message_user(
            request,
            f"Select at most {USER_ACTION_LIMIT} users for one action; nothing changed.",
            messages.ERROR,
        )
        return None
    allowed: list[User] = []
    refused: list[User] = []
    for user in selected:
        (allowed if policy_allows(actor, action.permission, user) else refused).append(user)
    if refused:
        model_admin.message_user(
            request,
            f"You may not {action.verb} {users_named(refused)}; nothing changed for them.",
            messages.ERROR,
        )
    if not allowed:
        return _done(request)
    if action.needs_step_up and step_up_missing(request):
        return step_up_redirect(
            request,
            what=action.description.rstrip("…"),
            retry="choose the action again",
            back_to=return_url(request) or request.get_full_path(),
        )
    reason = ""
    if action.needs_reason or action.needs_confirmation:
        form_class = UserActionReasonForm if action.needs_reason else forms.Form
        form = form_class(request.POST if "post" in request.POST else None)
        if not form.is_valid():
            return _confirmation_page(model_admin, request, action, allowed, refused, form)
        reason = form.cleaned_data.get("reason", "")
    _run_and_report(model_admin, request, action, allowed, actor, reason)
    return _done(request)


def _run_and_report(
    model_admin: Any, request: HttpRequest, action: UserAction, users: list[User], actor: User, reason: str
) -> None:
    done: list[User] = []
    already: list[User] = []
    failures: dict[str, list[User]] = {}
    for user in users:
        if action.already is not None and action.already(user):
            already.append(user)
            continue
        try:
            action.run(user, actor, reason)
        except ValidationError as error:
            failures.setdefault(" ".join(error.messages), []).append(user)
        else:
            done.append(user)
    if done:
        model_admin.message_user(request, action.done.format(users=users_named(done)), messages.SUCCESS)
    if already:
        model_admin.message_user(request, f"Nothing to do for {users_named(already)}: {action.already_done}.")
    for message, failed in failures.items():
        model_admin.message_user(request, f"Refused for {users_named(failed)}: {message}", messages.ERROR)


def _done(request: HttpRequest) -> HttpResponse | None:
    url = return_url(request)
    return HttpResponseRedirect(url) if url else None


def _confirmation_page(
    model_admin: Any,
    request: HttpRequest,
    action: UserAction,
    users: list[User],
    refused: list[User],
    form: forms.Form,
) -> TemplateResponse:
    return admin_page(
        model_admin,
        request,
        CONFIRMATION_TEMPLATE,
        title=f"{action.description.rstrip('…')}: are you sure?",
        action=action,
        users=users,
        refused=refused,
        form=form,
        action_checkbox_name=helpers.ACTION_CHECKBOX_NAME,
        next=return_url(request) or "",
    )
