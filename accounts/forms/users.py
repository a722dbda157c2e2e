"""Admin forms for the custom user model; they validate, and the admin saves through the services."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth import forms as auth_forms

from accounts.models import REASON_MAX_LENGTH, Role, User


class UserCreationForm(auth_forms.BaseUserCreationForm):
    """Username, e-mail and password of a new user; the admin creates it with `user_create`."""

    class Meta:
        model = User
        fields = ("username", "email")


class UserChangeForm(forms.ModelForm):
    """The profile fields `user_update_profile` changes, and the roles `user_set_roles` replaces.

    The admin drops `roles` for staff who may not assign roles; everything else on the change page
    (flags, dates) is read-only, and the e-mail address changes on a page of its own
    (`UserEmailChangeForm`).
    """

    roles = forms.MultipleChoiceField(
        choices=Role.choices,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Administrators are superusers; administrators and moderators can open this admin. "
        "Everyone keeps the user role.",
    )

    class Meta:
        model = User
        fields = ("username", "display_name", "description")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "roles" in self.fields and self.instance.pk is not None:
            self.initial["roles"] = self.instance.roles

    def clean_roles(self) -> list[str]:
        return sorted({*self.cleaned_data["roles"], Role.USER.value})

    def clean(self) -> dict[str, Any] | None:
        cleaned_data = super().clean()
        if cleaned_data and "username" in self.changed_data and "display_name" not in self.changed_data:
            # As in `user_update_profile`: a new username brings its own display name; a blank one
            # is the username (User.clean).
            cleaned_data["display_name"] = ""
        return cleaned_data


class UserActionReasonForm(forms.Form):
    """Why staff deactivate or lock down the selected users; it goes into the audit trail."""

    reason = forms.CharField(
        max_length=REASON_MAX_LENGTH,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="Recorded with the audit event; the users do not see it.",
    )


class UserEmailChangeForm(forms.Form):
    """The new address staff give a user (`user_change_email`), and whether it is known to be theirs."""

    email = forms.EmailField(label="New e-mail address", max_length=254)
    verified = forms.BooleanField(
        label="Already verified",
        required=False,
        help_text="Tick only if you have confirmed the user owns this address. Otherwise it is sent a "
        "verification link; where sign-in needs a verified address (the default), the user signs in "
        "again once they follow it.",
    )
    reason = forms.CharField(
        max_length=REASON_MAX_LENGTH,
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="Why (a ticket, how you checked who they are). Recorded with the audit event; the user "
        "does not see it.",
    )
