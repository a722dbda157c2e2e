"""Encrypt the TOTP secrets and recovery-code seeds stored before accounts.encryption existed."""

from __future__ import annotations

from typing import Any

from cryptography.fernet import InvalidToken
from django.db import migrations

from accounts.encryption import secret_decrypt, secret_encrypt

SECRET_FIELDS = {"totp": "secret", "recovery_codes": "seed"}


def _is_encrypted(value: str) -> bool:
    try:
        secret_decrypt(value)
    except (InvalidToken, ValueError):
        return False
    return True


def encrypt_secrets(apps: Any, schema_editor: Any) -> None:
    Authenticator = apps.get_model("mfa", "Authenticator")
    for authenticator in Authenticator.objects.filter(type__in=list(SECRET_FIELDS)).iterator():
        field = SECRET_FIELDS[authenticator.type]
        value = authenticator.data.get(field)
        if isinstance(value, str) and value and not _is_encrypted(value):
            authenticator.data[field] = secret_encrypt(value)
            authenticator.save(update_fields=["data"])


def decrypt_secrets(apps: Any, schema_editor: Any) -> None:
    Authenticator = apps.get_model("mfa", "Authenticator")
    for authenticator in Authenticator.objects.filter(type__in=list(SECRET_FIELDS)).iterator():
        field = SECRET_FIELDS[authenticator.type]
        value = authenticator.data.get(field)
        if isinstance(value, str) and _is_encrypted(value):
            authenticator.data[field] = secret_decrypt(value)
            authenticator.save(update_fields=["data"])


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0006_mfa_email_codes_and_session_auth_time"),
        ("mfa", "0003_authenticator_type_uniq"),
    ]

    operations = [migrations.RunPython(encrypt_secrets, decrypt_secrets)]
