"""The services a running server shares: settings, database and aggregate stores, keys, signer, DNS."""

from __future__ import annotations

import logging
import os
import secrets
import stat
from pathlib import Path

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
        self.orgs = OrgStore(self.database)
        self.domains = DomainStore(self.database)
        self.keys = KeyRing(self.orgs)
        self.audit = AuditStore(self.database)
        self.blobs = open_blob_store(settings.blobs_dir, self.database)
        self.signer = Signer(load_secret(settings.secret_path))
        self.resolver = make_resolver(settings.dns_servers)
        self.events = EventBus()
        self.webhooks = WebhookStore(self.database)
        self.triage = TriageStore(self.database)
        self.mail = MailStore(self.database, self.blobs, self.events)
        self.commit = GroupCommit(self.mail)
        """Group commit of stored mail, shared by SMTP ingest and the send route."""
        if moved := self.mail.adopt_shared_blobs():
            log.info("moved %d blob file(s) into per-organisation folders", moved)
        if indexed := index_bigram_backlog(self.database):
            log.info("indexed the CJK character pairs of %d message(s) stored before", indexed)
        self.validator = RecipientValidator(self.database, self.resolver)
        self.delivery = DeliveryStore(self.database)
        self.outbox = OutboxStore(self.database)
        self.deletion = DeletionStore(self.database, self.blobs)
        self.dmarc = DmarcStore(self.database)
        self.admin_key: str | None = None

    def bootstrap(self) -> None:
        """First start: default organisation, admin key file, shared default domain."""
        org = self.orgs.get_or_create_org(DEFAULT_ORG)
        key_path = self.settings.admin_key_path
        if not key_path.exists() or not key_path.read_text().strip():
            key, _ = self.keys.create(org["id"], ["admin", "read", "write"], name="admin")
            _write_private(key_path, key + "\n")
            self.admin_key = key
            log.info("Admin API key (shown once, also in %s): %s", key_path, key)
        else:
            self.admin_key = key_path.read_text().strip()
        self.ensure_shared_domain(self.settings.default_domain)

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
