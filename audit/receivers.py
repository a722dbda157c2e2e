"""Signal receivers of the audit app: they only delegate to the audit service."""

from __future__ import annotations

from typing import Any, cast

from django.contrib.admin.models import ADDITION, CHANGE, DELETION, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.db.models.signals import post_save
from django.dispatch import receiver

from audit.admin_changes import changes_for
from audit.services import audit_record

ADMIN_VERBS = {ADDITION: "added", CHANGE: "changed", DELETION: "deleted"}


@receiver(post_save, sender=LogEntry, dispatch_uid="audit.mirror_admin_log_entry")
def mirror_admin_log_entry(sender: type[LogEntry], instance: LogEntry, created: bool, **kwargs: Any) -> None:
    """Every admin change is an audit event too, in the same transaction."""
    if not created:
        return
    content_type = cast(ContentType | None, instance.content_type)
    model_label = f"{content_type.app_label}.{content_type.model}" if content_type else "unknown"
    object_id = str(instance.object_id or "")  # a UUID object until the row is read back
    audit_record(
        action=f"admin.object.{ADMIN_VERBS.get(instance.action_flag, 'changed')}",
        actor=instance.user,
        target=(model_label, object_id, instance.object_repr),
        changes=changes_for(model_label=model_label, object_id=object_id),
        metadata={"change_message": instance.get_change_message()},
    )
