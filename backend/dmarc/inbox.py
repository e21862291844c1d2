"""The report inbox: `dmarc-reports@<domain>` exists once the first report arrives for a verified domain.

Nobody has to create it, and nobody sees an inbox they did not ask for until reports actually come:
when `RCPT TO` names the reserved address of a verified domain (not the shared one) that has no such
inbox, it is created in the domain's organisation (audit-logged) and the mail is accepted. Reports are
then ordinary messages in that inbox, and the worker parses them. Disabling the inbox refuses reports;
deleting it only lasts until the next report.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..dns.records import DMARC_REPORT_LOCAL_PART
from ..store.errors import IntegrityError

if TYPE_CHECKING:
    from ..services import Services

DISPLAY_NAME = "DMARC reports"


def report_inbox(services: Services, address: str) -> dict | None:
    """The report inbox for `address`, created now if it is a verified domain's reserved address."""
    local_part, _, name = address.lower().rpartition("@")
    if local_part != DMARC_REPORT_LOCAL_PART:
        return None
    domain = services.domains.domain_by_name(name)
    if domain is None or domain["shared"] or domain["org_id"] is None:
        return None
    try:
        inbox = services.domains.create_inbox(domain["org_id"], domain, DMARC_REPORT_LOCAL_PART, DISPLAY_NAME, None)
    except IntegrityError:  # another session created it a moment ago
        return services.domains.inbox_by_address(address)
    services.audit.record(domain["org_id"], None, "inbox.created", "inbox", inbox["id"],
                          {"address": inbox["address"], "reason": "first DMARC aggregate report"})
    return inbox
