"""The services a running server shares: settings, database and aggregate stores, keys, signer, DNS."""

from __future__ import annotations

import logging
import os
import secrets
import stat
from pathlib import Path

from . import coordination
from .auth import KeyRing
from .config import Settings
from .delivery.validation import RecipientValidator
from .dns.records import DKIM_SELECTOR, generate_dkim_key, required_records
from .dns.resolver import make_resolver
from .events import EventBus
from .signing import Signer
from .smtp.commit import GroupCommit
from .store.audit import AuditStore
from .store.bigrams import index_backlog as index_bigram_backlog
from .store.blobs import open_blob_store
from .store.database import open_database
from .store.deletion import DeletionStore
from .store.delivery import DeliveryStore
from .store.dmarc import DmarcStore
from .store.domains import DomainStore
from .store.leases import Leases, release_stale
from .store.mail import MailStore
from .store.orgs import OrgStore
from .store.outbox import OutboxStore
from .store.triage import TriageStore
from .store.webhooks import WebhookStore

log = logging.getLogger("commune.server")

DEFAULT_ORG = "default"


def _write_private(path: Path, content: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(content)
    os.chmod(path, 0o600)


def prepare_data_dir(path: Path) -> None:
    """Create the data directory 0700 whatever the umask, or warn when an existing one lets others in."""
    if path.is_dir():
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            log.warning("data directory %s has mode %03o: other users may read the mail, keys and secrets in it;"
                        " run 'chmod 700 %s'", path, mode, path)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.mkdir(mode=0o700, exist_ok=True)


def load_secret(path: Path) -> bytes:
    if not path.exists():
        _write_private(path, secrets.token_hex(32) + "\n")
    return bytes.fromhex(path.read_text().strip())


class Services:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        prepare_data_dir(settings.data_dir)
        self.database = open_database(settings)
        self.node_id = coordination.node_id(settings.node_id)
        """This node's name in leases and relayed events."""
        self.orgs = OrgStore(self.database)
        self.domains = DomainStore(self.database)
        self.keys = KeyRing(self.orgs)
        self.audit = AuditStore(self.database)
        self.blobs = open_blob_store(settings.blobs_dir, self.database)
        self.signer = Signer(coordination.server_secret(self.database, settings.secret_path, load_secret))
        self.resolver = make_resolver(settings.dns_servers)
        self.events = EventBus()
        self.webhooks = WebhookStore(self.database, self.leases("webhook_deliveries"))
        self.triage = TriageStore(self.database)
        self.mail = MailStore(self.database, self.blobs, self.events)
        self.commit = GroupCommit(self.mail)
        """Group commit of stored mail, shared by SMTP ingest and the send route."""
        if moved := self.mail.adopt_shared_blobs():
            log.info("moved %d blob file(s) into per-organisation folders", moved)
        if indexed := index_bigram_backlog(self.database):
            log.info("indexed the CJK character pairs of %d message(s) stored before", indexed)
        self.validator = RecipientValidator(self.database, self.resolver)
        self.delivery = DeliveryStore(self.database, self.leases("outbound_queue"))
        self.outbox = OutboxStore(self.database, self.leases("outbox"))
        self.deletion = DeletionStore(self.database, self.blobs)
        self.dmarc = DmarcStore(self.database)
        self.admin_key: str | None = None

    def leases(self, table: str) -> Leases:
        return Leases(self.database, table, self.node_id, self.settings.lease_seconds)

    def bootstrap(self) -> None:
        """First start: default organisation, admin key, shared default domain; and the leases a previous
        run left (every lease on SQLite, where this is the only server; this node's own with a configured
        `node_id` on a shared database; on a shared database other leases run out by themselves)."""
        shared = coordination.shared(self.database)
        if not shared or self.settings.node_id:
            release_stale(self.database, self.node_id if shared else None)
        # One transaction: on a shared database a second node starting at the same moment waits for the
        # first one's organisation, key and domain instead of creating its own.
        with self.database.transaction() as conn:
            first = coordination.first_to_record(conn, coordination.ADMIN_KEY, self.node_id)
            org = self.orgs.get_or_create_org(DEFAULT_ORG)
            key_path, created = self.settings.admin_key_path, None
            if key_path.exists() and key_path.read_text().strip():
                self.admin_key = key_path.read_text().strip()
            elif first or not shared:
                created, _ = self.keys.create(org["id"], ["admin", "read", "write"], name="admin")
            self.ensure_shared_domain(self.settings.default_domain)
        if created is not None:
            _write_private(key_path, created + "\n")
            self.admin_key = created
            log.info("Admin API key (shown once, also in %s): %s", key_path, created)
        elif self.admin_key is None:
            log.info("the admin API key of this database was created by another node (in its admin.key)")

    def release_leases(self) -> None:
        """On a clean stop: give this node's leases back, so other nodes need not wait for them to run out."""
        release_stale(self.database, self.node_id)

    def ensure_shared_domain(self, name: str) -> dict:
        found = self.domains.domain_by_name(name)
        if found is not None:
            return found
        private_pem, public_b64 = generate_dkim_key()
        # No DMARC record: the shared domain's DNS is the operator's, and its reports are no tenant's.
        records = required_records(name, self.settings.hostname, public_b64, dmarc=False)
        return self.domains.create_domain(
            None, name, "local", records, private_pem, DKIM_SELECTOR, shared=True, status="verified"
        )

    def close(self) -> None:
        self.database.close()
