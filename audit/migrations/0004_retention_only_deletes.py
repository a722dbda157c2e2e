"""On PostgreSQL, only the retention job deletes audit events.

The switch of 0002 (`SET LOCAL audit.allow_delete = 'on'`) was open to any session. A DELETE now
passes only for an event older than a day, in the transaction that wrote the newest pruning
checkpoint, at or below that checkpoint's boundary. Checkpoints are append-only, and the database
stamps each with the transaction that wrote it. So every deletion leaves a permanent checkpoint,
whose MAC only a holder of AUDIT_CHAIN_KEYS can make: a deletion by anyone else is reported by
verification. The table's owner can still drop a trigger; the keyed chain, its checkpoints and the
anchors outside the database are what catch that (docs/decisions/0007-audit-trail.md).
"""

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION audit_event_append_only() RETURNS trigger AS $$
DECLARE
    boundary RECORD;
BEGIN
    IF TG_OP = 'DELETE' THEN
        SELECT transaction_id, through_id INTO boundary
            FROM audit_auditchaincheckpoint WHERE kind = 'pruned' ORDER BY id DESC LIMIT 1;
        IF FOUND AND boundary.transaction_id = txid_current() AND OLD.id <= boundary.through_id
                AND OLD.occurred_at < now() - interval '1 day' THEN
            RETURN OLD;
        END IF;
    END IF;
    RAISE EXCEPTION 'audit events are append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION audit_checkpoint_append_only() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        NEW.transaction_id := txid_current();
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'audit chain checkpoints are append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER audit_checkpoint_append_only
    BEFORE INSERT OR UPDATE OR DELETE ON audit_auditchaincheckpoint
    FOR EACH ROW EXECUTE FUNCTION audit_checkpoint_append_only();
"""

DROP = """
DROP TRIGGER IF EXISTS audit_checkpoint_append_only ON audit_auditchaincheckpoint;
DROP FUNCTION IF EXISTS audit_checkpoint_append_only();

CREATE OR REPLACE FUNCTION audit_event_append_only() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' AND current_setting('audit.allow_delete', true) = 'on' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'audit events are append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
"""


def create_guards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE, params=None)


def drop_guards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP, params=None)


class Migration(migrations.Migration):
    dependencies = [("audit", "0003_keyed_chain")]

    operations = [migrations.RunPython(create_guards, drop_guards)]
