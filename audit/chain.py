"""The audit chain's keys, MACs and verification (docs/decisions/0007-audit-trail.md).

Each event's `hash` is HMAC-SHA256(key, "audit.event.v2" + previous event's hash + its content as
canonical JSON), under the first of AUDIT_CHAIN_KEYS when it was written; `key_id` names that key by
a digest of it, never the key itself. The keys are not in the database: whoever can only read and
write the database cannot recompute a MAC, so a removed, inserted or rewritten event shows.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError

from audit import app_settings
from audit.models import AuditChainCheckpoint, AuditEvent

KEY_ID_LENGTH = 8
_EVENT_DOMAIN = "audit.event.v2"
_CHECKPOINT_DOMAIN = "audit.checkpoint.v1"
_LINK = re.compile(r"^(?P<seq>[0-9]{1,19}):(?P<mac>[0-9a-f]{64})$")


@dataclass(frozen=True)
class ChainKey:
    key_id: str
    secret: bytes = field(repr=False)


@dataclass(frozen=True)
class ChainKeys:
    signing: ChainKey
    by_id: Mapping[str, ChainKey]


def key_id_for(secret: bytes) -> str:
    """A short public name for a key: the first hex digits of an HMAC under it."""
    return hmac.new(secret, b"audit.chain.key-id", hashlib.sha256).hexdigest()[:KEY_ID_LENGTH]


@functools.lru_cache(maxsize=8)
def _chain_keys(keys: tuple[str, ...]) -> ChainKeys:
    parsed = [ChainKey(key_id=key_id_for(key.encode()), secret=key.encode()) for key in keys]
    # A later key never shadows an earlier one with the same ID (the same key listed twice).
    return ChainKeys(signing=parsed[0], by_id={key.key_id: key for key in reversed(parsed)})


def chain_keys() -> ChainKeys:
    """The configured keys, parsed once per process (and again when the setting changes)."""
    return _chain_keys(app_settings.chain_keys())


def _canonical(fields: Mapping[str, Any]) -> str:
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), default=str)


def event_mac(*, key: ChainKey, previous_hash: str, fields: Mapping[str, Any]) -> str:
    """HMAC-SHA256 over the previous event's hash and this event's content."""
    message = f"{_EVENT_DOMAIN}\n{previous_hash}\n{_canonical(fields)}".encode()
    return hmac.new(key.secret, message, hashlib.sha256).hexdigest()


def legacy_event_hash(*, previous_hash: str, fields: Mapping[str, Any]) -> str:
    """The unkeyed SHA-256 of events written before the chain had keys (migration 0005 marks them)."""
    return hashlib.sha256(f"{previous_hash}\n{_canonical(fields)}".encode()).hexdigest()


def checkpoint_mac(
    *, key: ChainKey, kind: str, created_at: datetime, through_id: int, through_hash: str, deleted: int
) -> str:
    """HMAC-SHA256 over what a checkpoint states; its own domain, so no event MAC can pass for one."""
    fields = {
        "kind": kind,
        "created_at": created_at.isoformat(),
        "through_id": through_id,
        "through_hash": through_hash,
        "deleted": deleted,
    }
    return hmac.new(
        key.secret, f"{_CHECKPOINT_DOMAIN}\n{_canonical(fields)}".encode(), hashlib.sha256
    ).hexdigest()


@dataclass(frozen=True)
class ChainLink:
    """A position in the chain (the event's primary key) and the MAC of the event there."""

    seq: int
    mac: str

    def __str__(self) -> str:
        return f"{self.seq}:{self.mac}"

    @classmethod
    def parse(cls, text: str) -> ChainLink:
        """Read "SEQ:MAC", as the anchor job logs it."""
        match = _LINK.match(text.strip())
        if match is None:
            raise ValidationError(
                {
                    "anchor": ValidationError(
                        'Give an anchor as "SEQ:MAC" (64 lowercase hex digits).', code="invalid"
                    )
                }
            )
        return cls(seq=int(match["seq"]), mac=match["mac"])

    @classmethod
    def from_anchor_file(cls, path: Path) -> ChainLink:
        """The newest anchor of an anchor file (AUDIT_ANCHOR_FILE): its last line."""
        lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        if not lines:
            raise ValidationError({"anchor": ValidationError(f"{path} holds no anchor.", code="invalid")})
        try:
            newest = json.loads(lines[-1])
            return cls.parse(f"{newest['seq']}:{newest['mac']}")
        except (ValueError, KeyError, TypeError) as error:
            raise ValidationError(
                {"anchor": ValidationError(f"The last line of {path} is not an anchor.", code="invalid")}
            ) from error


@dataclass(frozen=True)
class ChainReport:
    """What a verification found: how far the chain held, and where and why it broke."""

    full: bool
    checked: int = 0
    first_seq: int | None = None
    # The newest event found intact (or, with nothing new, where the previous verification ended).
    last: ChainLink | None = None
    broken_seq: int | None = None
    broken_event: AuditEvent | None = None
    reason: str = ""

    @property
    def is_intact(self) -> bool:
        return not self.reason


def chain_head() -> AuditEvent | None:
    """The newest event: what an anchor records."""
    return AuditEvent.objects.order_by("-id").first()


def latest_checkpoint(kind: str) -> AuditChainCheckpoint | None:
    return AuditChainCheckpoint.objects.filter(kind=kind).order_by("-id").first()


def _checkpoint_is_authentic(checkpoint: AuditChainCheckpoint, keys: ChainKeys) -> bool:
    key = keys.by_id.get(checkpoint.key_id)
    if key is None:
        return False
    expected = checkpoint_mac(
        key=key,
        kind=checkpoint.kind,
        created_at=checkpoint.created_at,
        through_id=checkpoint.through_id,
        through_hash=checkpoint.through_hash,
        deleted=checkpoint.deleted,
    )
    return hmac.compare_digest(checkpoint.mac, expected)


def _content_problem(event: AuditEvent, keys: ChainKeys, *, unkeyed_through: int) -> str:
    """Why the event's own MAC (or, before keys, its hash) is wrong; "" when it is right."""
    fields = event.chained_fields()
    if not event.key_id:
        if event.pk > unkeyed_through:
            return "it is unkeyed, but the chain was keyed before it"
        expected = legacy_event_hash(previous_hash=event.previous_hash, fields=fields)
        return "" if hmac.compare_digest(event.hash, expected) else "content does not match its hash"
    key = keys.by_id.get(event.key_id)
    if key is None:
        return f"it is MACed with key {event.key_id}, which AUDIT_CHAIN_KEYS does not hold"
    expected = event_mac(key=key, previous_hash=event.previous_hash, fields=fields)
    return "" if hmac.compare_digest(event.hash, expected) else "content does not match its MAC"


class AnchorPredatesChain(ValidationError):
    """The anchored event was pruned: the anchor can no longer be checked."""


def audit_chain_verify(
    *,
    since: ChainLink | None = None,
    anchor: ChainLink | None = None,
    accept_unkeyed: bool = False,
    batch_size: int = 2000,
) -> ChainReport:
    """Walk the chain in order and report the first broken link.

    From its retained start (the last pruning checkpoint, or the genesis hash) — or, with `since`,
    only the events after that link, which must itself still be there unchanged. With `anchor`
    (always a full walk), the anchored event must be there with the anchored MAC: then nothing up
    to it was removed or rewritten, whatever happened to the checkpoints. `accept_unkeyed` lets
    unkeyed events past the legacy checkpoint through, before they are checkpointed.
    """
    keys = chain_keys()
    start = latest_checkpoint(AuditChainCheckpoint.Kind.PRUNED)
    unkeyed = latest_checkpoint(AuditChainCheckpoint.Kind.LEGACY)
    for checkpoint in (start, unkeyed):
        if checkpoint is not None and not _checkpoint_is_authentic(checkpoint, keys):
            first = AuditEvent.objects.order_by("id").first()
            return ChainReport(
                full=True,
                broken_seq=first.pk if first else None,
                broken_event=first,
                reason=(
                    f"the last {checkpoint.kind} checkpoint (#{checkpoint.pk}, through "
                    f"#{checkpoint.through_id}) does not match its MAC"
                ),
            )
    pruned_through = start.through_id if start is not None else 0
    if anchor is not None:
        if anchor.seq < pruned_through:
            raise AnchorPredatesChain(
                {
                    "anchor": ValidationError(
                        f"Event #{anchor.seq} was pruned (the chain now starts after #{pruned_through}): "
                        "verify with a newer anchor.",
                        code="anchor_pruned",
                    )
                }
            )
        since = None  # an anchor proves something only with the whole chain before it walked
    if since is not None and since.seq <= pruned_through:
        since = None  # retention has pruned past the last verification: walk what remains

    events = AuditEvent.objects.order_by("id")
    previous_hash = start.through_hash if start is not None else AuditEvent.GENESIS_HASH
    if since is not None:
        base = AuditEvent.objects.filter(pk=since.seq).first()
        if base is None or not hmac.compare_digest(base.hash, since.mac):
            return ChainReport(
                full=False,
                broken_seq=since.seq,
                broken_event=base,
                reason="the event the previous verification ended at is "
                + ("missing" if base is None else "no longer the same"),
            )
        events, previous_hash = events.filter(id__gt=since.seq), base.hash

    anchor_seen = False
    if anchor is not None and start is not None and anchor.seq == start.through_id:
        # The anchored event was the last one pruned: its checkpoint kept its MAC.
        if not hmac.compare_digest(start.through_hash, anchor.mac):
            return ChainReport(
                full=True, broken_seq=anchor.seq, reason="the pruning checkpoint holds another MAC"
            )
        anchor_seen = True

    unkeyed_through = unkeyed.through_id if unkeyed is not None else 0
    if accept_unkeyed:
        unkeyed_through = sys.maxsize
    checked, first_seq, last = 0, None, since
    for event in events.iterator(chunk_size=batch_size):
        if event.previous_hash != previous_hash:
            if since is None and last is None:
                reason = (
                    f"the chain starts at #{event.pk} but the last checkpoint says it starts after "
                    f"#{start.through_id}"
                    if start is not None
                    else f"the chain starts at #{event.pk} but no checkpoint records that the events "
                    "before it were pruned"
                )
            else:
                reason = "it does not follow the event before it"
        else:
            reason = _content_problem(event, keys, unkeyed_through=unkeyed_through)
        if not reason and unkeyed is not None and event.pk == unkeyed.through_id:
            reason = "" if event.hash == unkeyed.through_hash else "it does not match the legacy checkpoint"
        if not reason and anchor is not None and event.pk == anchor.seq:
            anchor_seen = True
            reason = "" if hmac.compare_digest(event.hash, anchor.mac) else "it does not match the anchor"
        if reason:
            return ChainReport(
                full=since is None,
                checked=checked,
                first_seq=first_seq,
                last=last,
                broken_seq=event.pk,
                broken_event=event,
                reason=reason,
            )
        previous_hash = event.hash
        first_seq = event.pk if first_seq is None else first_seq
        last = ChainLink(seq=event.pk, mac=event.hash)
        checked += 1
    if anchor is not None and not anchor_seen:
        return ChainReport(
            full=True,
            checked=checked,
            first_seq=first_seq,
            last=last,
            broken_seq=anchor.seq,
            reason="the anchored event is missing; "
            + (f"the chain ends at #{last.seq}" if last is not None else "the chain is empty"),
        )
    return ChainReport(full=since is None, checked=checked, first_seq=first_seq, last=last)
