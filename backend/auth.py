"""API keys and scopes: generation, hashing, constant-time lookup, scope expansion."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from types import EllipsisType

from .store.orgs import ApiKeyRecord, OrgStore
from .util import now_iso

RESOURCES = ("domains", "inboxes", "threads", "messages", "attachments", "delivery", "webhooks", "drafts")
RESOURCE_SCOPES = tuple(f"{r}:{a}" for r in RESOURCES for a in ("read", "write"))
SPECIAL_SCOPES = ("admin", "data:delete", "approvals:write")
"""Granted only by name or by `admin`: `write` never includes them."""
ALL_SCOPES = ("read", "write", *RESOURCE_SCOPES, *SPECIAL_SCOPES)
DEFAULT_SCOPES = ["read", "write"]
KEY_PREFIX = "comm_"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def validate_scopes(scopes: list[str]) -> list[str]:
    unknown = [s for s in scopes if s not in ALL_SCOPES]
    if unknown:
        raise ValueError(f"Unknown scope(s): {', '.join(unknown)}; known: {', '.join(ALL_SCOPES)}")
    if not scopes:
        raise ValueError("At least one scope is required")
    return scopes


def expand_scopes(scopes: tuple[str, ...] | list[str]) -> frozenset[str]:
    """`read`/`write` grant every resource scope of that kind; `admin` grants everything."""
    granted: set[str] = set(scopes)
    if "admin" in granted:
        return frozenset(ALL_SCOPES)
    for scope in scopes:
        if scope in ("read", "write"):
            granted.update(f"{r}:{scope}" for r in RESOURCES)
    return frozenset(granted)


def has_scope(granted: frozenset[str], needed: str) -> bool:
    if needed == "data:delete":
        return "data:delete" in granted or "admin" in granted
    return needed in granted


class KeyRing:
    """Looks keys up by hash with a short cache, so the hot path costs one dict lookup."""

    CACHE_SECONDS = 5.0
    TOUCH_SECONDS = 60.0
    """How often a key's `last_used_at` is written."""

    def __init__(self, orgs: OrgStore) -> None:
        self.orgs = orgs
        self._cache: dict[str, tuple[float, ApiKeyRecord | None, frozenset[str]]] = {}
        self._touched: dict[str, float] = {}
        self.listeners: list[Callable[[], None]] = []
        """Called after `forget`: tells the other nodes sharing the database to drop their cached keys."""

    def create(self, org_id: str, scopes: list[str], name: str = "",
               hold_sends: bool = False) -> tuple[str, ApiKeyRecord]:
        key = generate_key()
        record = self.orgs.insert_key(org_id, hash_key(key), key[: len(KEY_PREFIX) + 6], scopes, name,
                                      hold_sends)
        return key, record

    def recall(self, presented: str) -> tuple[ApiKeyRecord, frozenset[str]] | None | EllipsisType:
        """`authenticate` from memory alone, or `...` when it needs the database (a key not seen in the
        last seconds, or one whose last use is due to be recorded)."""
        digest = hash_key(presented)
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is None or now - cached[0] > self.CACHE_SECONDS:
            return ...
        found = _verdict(cached, digest)
        if found is not None and now - self._touched.get(found[0].id, 0.0) > self.TOUCH_SECONDS:
            return ...
        return found

    def authenticate(self, presented: str) -> tuple[ApiKeyRecord, frozenset[str]] | None:
        """The key and the scopes it grants, or None for an unknown or revoked key (blocking: it may read
        and write the database; request code calls it through `database.run`)."""
        digest = hash_key(presented)
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is None or now - cached[0] > self.CACHE_SECONDS:
            record = self.orgs.key_by_hash(digest)
            granted = expand_scopes(record.scopes) if record else frozenset()
            cached = (now, record, granted)
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[digest] = cached
        found = _verdict(cached, digest)
        if found is not None and now - self._touched.get(found[0].id, 0.0) > self.TOUCH_SECONDS:
            self._touched[found[0].id] = now
            self.orgs.touch_key(found[0].id, now_iso())
        return found

    def forget(self) -> None:
        """Drop every cached key here and (through `listeners`: the relay) on the other nodes, so a
        revocation or change holds from the next request on whichever node it reaches."""
        self.drop()
        for listener in list(self.listeners):
            listener()

    def drop(self) -> None:
        """Drop every cached key on this node only (another node's `forget`)."""
        self._cache.clear()


def _verdict(cached: tuple[float, ApiKeyRecord | None, frozenset[str]],
             digest: str) -> tuple[ApiKeyRecord, frozenset[str]] | None:
    _, record, granted = cached
    # The index finds the row; the final equality check is constant-time all the same.
    if record is None or not hmac.compare_digest(record.key_hash, digest) or record.revoked_at is not None:
        return None
    return record, granted
