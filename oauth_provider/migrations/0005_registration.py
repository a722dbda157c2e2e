import uuid

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models

import oauth_provider.models.registration


class Migration(migrations.Migration):
    dependencies = [
        ("oauth_provider", "0004_token_links"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="InitialAccessToken",
            fields=[
                ("id", models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                ("label", models.CharField(help_text="Who or what the token was given to.", max_length=150)),
                ("token_checksum", models.CharField(editable=False, max_length=64, unique=True)),
                ("token_prefix", models.CharField(editable=False, max_length=16)),
                ("created_at", models.DateTimeField(default=django.utils.timezone.now, editable=False)),
                ("expires_at", models.DateTimeField()),
                (
                    "max_uses",
                    models.PositiveIntegerField(
                        blank=True, help_text="How many clients it may register; empty for no limit.", null=True
                    ),
                ),
                ("uses", models.PositiveIntegerField(default=0, editable=False)),
                ("last_used_at", models.DateTimeField(blank=True, editable=False, null=True)),
                ("revoked_at", models.DateTimeField(blank=True, editable=False, null=True)),
                (
                    "allowed_scopes",
                    models.TextField(
                        blank=True,
                        help_text="Space-separated scopes its clients may have; empty for OAUTH_REGISTRATION_SCOPES.",
                    ),
                ),
                (
                    "allowed_grant_types",
                    models.JSONField(
                        default=oauth_provider.models.registration.default_registration_grant_types,
                        help_text="RFC 7591 grant types its clients may use.",
                    ),
                ),
                (
                    "created_by",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                (
                    "revoked_by",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={
                "verbose_name": "initial access token",
                "ordering": ("-created_at",),
                "indexes": [models.Index(fields=["created_at"], name="oauth_iat_created_idx")],
                "constraints": [
                    models.CheckConstraint(
                        condition=models.Q(("max_uses__isnull", True), ("max_uses__gte", 1), _connector="OR"),
                        name="oauth_iat_max_uses_positive",
                    )
                ],
            },
        ),
        migrations.CreateModel(
            name="ClientRegistration",
            fields=[
                (
                    "application",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE,
                        primary_key=True,
                        related_name="registration",
                        serialize=False,
                        to="oauth_provider.application",
                    ),
                ),
                (
                    "token_endpoint_auth_method",
                    models.CharField(
                        choices=[
                            ("client_secret_basic", "client_secret_basic"),
                            ("client_secret_post", "client_secret_post"),
                            ("none", "none (public client, PKCE)"),
                        ],
                        max_length=32,
                    ),
                ),
                ("registration_token_checksum", models.CharField(editable=False, max_length=64, unique=True)),
                ("created_at", models.DateTimeField(default=django.utils.timezone.now, editable=False)),
                ("updated_at", models.DateTimeField(auto_now=True)),
                (
                    "initial_access_token",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="registrations",
                        to="oauth_provider.initialaccesstoken",
                    ),
                ),
                (
                    "registered_by",
                    models.ForeignKey(
                        blank=True,
                        help_text="The staff member who registered it with their session, if one did.",
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={
                "verbose_name": "client registration",
            },
        ),
    ]
