"""Deleting many rows without long locks: small batches, each in its own transaction."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from django.db import models, transaction


def delete_in_batches(
    model: type[models.Model],
    condition: models.Q,
    *,
    batch_size: int,
    pause: float = 0.0,
    on_batch: Callable[[int], None] | None = None,
) -> int:
    """Delete the rows of `model` matching `condition`, `batch_size` at a time, each in its own
    short transaction; returns how many went.

    Rows are walked once in primary-key order (keyset), so a table of millions is read once
    rather than rescanned for every batch; each batch re-checks `condition` as it deletes, so a
    row that stopped matching in between is kept.
    """
    deleted = 0
    last_pk: Any = None
    while True:
        candidates = model._default_manager.filter(condition)
        if last_pk is not None:
            candidates = candidates.filter(pk__gt=last_pk)
        batch = list(candidates.order_by("pk").values_list("pk", flat=True)[:batch_size])
        if not batch:
            return deleted
        last_pk = batch[-1]
        with transaction.atomic():
            _, by_model = model._default_manager.filter(condition, pk__in=batch).delete()
        count = by_model.get(model._meta.label, 0)
        deleted += count
        if on_batch is not None:
            on_batch(count)
        if len(batch) < batch_size:
            return deleted
        if pause:
            time.sleep(pause)
