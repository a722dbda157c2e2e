"""Mark where the unkeyed chain ends, with keyed checkpoints, so that events from before keys verify.

Events written before 0003 carry an unkeyed SHA-256 (empty `key_id`). A `legacy` checkpoint names
the newest of them: verification accepts unkeyed events up to it and none after, so nobody can
rewrite keyed events as unkeyed ones. If retention had already pruned the oldest events, a
`pruned` checkpoint records where the chain starts now. Both are MACed with the first of
AUDIT_CHAIN_KEYS, which must therefore be set before migrating a database that holds events.
Events the previous release's processes record after this (during a rolling upgrade) are unkeyed
too: `audit_verify --checkpoint-unkeyed` checkpoints them once the upgrade is done.
"""

from django.db import migrations

GENESIS_HASH = "0" * 64
CHAIN_LOCK_ID = 0x41554454  # audit.services.CHAIN_LOCK_ID


def checkpoint_unkeyed_events(apps, schema_editor):
    from audit.chain import chain_keys, checkpoint_mac

    event_model = apps.get_model("audit", "AuditEvent")
    checkpoint_model = apps.get_model("audit", "AuditChainCheckpoint")
    if schema_editor.connection.vendor == "postgresql":
        # Writers still running the previous release finish first, so the checkpoint names the last.
        with schema_editor.connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [CHAIN_LOCK_ID])
    newest = event_model.objects.filter(key_id="").order_by("-id").first()
    if newest is None:
        return
    key = chain_keys().signing

    def checkpoint(kind, through_id, through_hash):
        row = checkpoint_model(kind=kind, through_id=through_id, through_hash=through_hash, key_id=key.key_id)
        row.mac = checkpoint_mac(
            key=key,
            kind=kind,
            created_at=row.created_at,
            through_id=through_id,
            through_hash=through_hash,
            deleted=row.deleted,
        )
        row.save()

    oldest = event_model.objects.order_by("id").first()
    pruned_without_checkpoint = not checkpoint_model.objects.filter(kind="pruned").exists()
    if oldest.previous_hash != GENESIS_HASH and pruned_without_checkpoint:
        checkpoint("pruned", oldest.pk - 1, oldest.previous_hash)
    checkpoint("legacy", newest.pk, newest.hash)


class Migration(migrations.Migration):
    dependencies = [("audit", "0004_retention_only_deletes")]

    # Backwards there is nothing to undo: 0003 drops the checkpoints' table.
    operations = [migrations.RunPython(checkpoint_unkeyed_events, migrations.RunPython.noop)]
