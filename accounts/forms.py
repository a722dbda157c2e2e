"""Admin forms for the custom user model."""

from __future__ import annotations

from django.contrib.auth import forms as auth_forms

from accounts.models import User


class UserCreationForm(auth_forms.BaseUserCreationForm):
    class Meta:
        model = User
        fields = ("username", "email")


class UserChangeForm(auth_forms.UserChangeForm):
    class Meta:
        model = User
        fields = ("username", "display_name", "email", "description")
