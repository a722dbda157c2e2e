import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("oauth_provider", "0003_consents"),
    ]

    operations = [
        migrations.CreateModel(
            name="TokenFamily",
            fields=[
                (
                    "family",
                    models.UUIDField(
                        help_text="The toolkit's RefreshToken.token_family.",
                        primary_key=True,
                        serialize=False,
                    ),
                ),
                ("grant_type", models.CharField(max_length=64)),
                (
                    "authorization_code_checksum",
                    models.CharField(blank=True, max_length=64, null=True, unique=True),
                ),
                ("started_at", models.DateTimeField(default=django.utils.timezone.now)),
                (
                    "application",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to=settings.OAUTH2_PROVIDER_APPLICATION_MODEL,
                    ),
                ),
            ],
            options={
                "verbose_name": "token family",
                "verbose_name_plural": "token families",
                "indexes": [models.Index(fields=["started_at"], name="oauth_token_family_started_idx")],
            },
        ),
    ]
