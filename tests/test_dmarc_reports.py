"""DMARC aggregate reports: the DMARC record a domain publishes, reports mailed over SMTP to its `rua`
address (gzip, zip, inline XML, as Google and Microsoft send them), the API and the official CLI
showing their figures, and hostile reports stored, flagged and survived."""

from __future__ import annotations

import gzip
import io
import smtplib
import sqlite3
import struct
import time
import uuid
import zipfile
from email.message import EmailMessage
from pathlib import Path

import httpx

from backend.store.migrations import DMARC_REPORTS, MIGRATIONS
from tests import dnsserver
from tests.conftest import Running, start_server
from tests.official_clients import run_cli, run_cli_terminal
from tests.waiting import wait_until

DAY = 86_400


def ok(response: httpx.Response, status: int = 200) -> dict:
    assert response.status_code == status, response.text
    return response.json()


def publish(dns_server: dnsserver.TestDNSServer, records: list[dict], skip: tuple[str, ...] = ()) -> None:
    for record in records:
        if record["record"] in skip:
            continue
        if record["type"] == "MX":
            dns_server.publish(record["name"], "MX", f"{record['priority']} {record['value']}.")
        else:
            value = record["value"]
            dns_server.publish(record["name"], "TXT", " ".join(f'"{value[i:i + 200]}"'
                                                               for i in range(0, len(value), 200)))


def verified_domain(api: httpx.Client, dns_server: dnsserver.TestDNSServer) -> dict:
    """A new domain, every record published in the test DNS server, verified."""
    name = f"dmarc-{uuid.uuid4().hex[:8]}.test"
    domain = ok(api.post("/v1/domains", json={"name": name}), 201)["data"]
    publish(dns_server, ok(api.get(f"/v1/domains/{domain['id']}/records"))["data"])
    verified = ok(api.post(f"/v1/domains/{domain['id']}/verify"))["data"]
    assert verified["status"] == "verified"
    return {**domain, "records": verified["records"]}


# reports as the big mailbox providers write them ----------------------------------------------------
def rows_xml(domain: str, rows: list[dict], envelope_to: bool = False) -> str:
    out = []
    for row in rows:
        out.append(f"""
  <record>
    <row>
      <source_ip>{row['ip']}</source_ip>
      <count>{row['count']}</count>
      <policy_evaluated>
        <disposition>{row.get('disposition', 'none')}</disposition>
        <dkim>{row['dkim']}</dkim>
        <spf>{row['spf']}</spf>{row.get('reason', '')}
      </policy_evaluated>
    </row>
    <identifiers>{'<envelope_to>outlook.com</envelope_to>' if envelope_to else ''}
      <envelope_from>send.{domain}</envelope_from>
      <header_from>{domain}</header_from>
    </identifiers>
    <auth_results>
      <dkim>
        <domain>{domain}</domain>
        <selector>commune</selector>
        <result>{row['dkim']}</result>
      </dkim>
      <spf>
        <domain>send.{domain}</domain>
        <scope>mfrom</scope>
        <result>{row['spf']}</result>
      </spf>
    </auth_results>
  </record>""")
    return "".join(out)


def head_xml(org: str, email: str, report_id: str, begin: int, end: int, domain: str, extra: str = "",
             policy_extra: str = "") -> str:
    """`report_metadata` and `policy_published` laid out the way the big reporters lay them out."""
    return f"""
  <report_metadata>
    <org_name>{org}</org_name>
    <email>{email}</email>{extra}
    <report_id>{report_id}</report_id>
    <date_range>
      <begin>{begin}</begin>
      <end>{end}</end>
    </date_range>
  </report_metadata>
  <policy_published>
    <domain>{domain}</domain>
    <adkim>r</adkim>
    <aspf>r</aspf>
    <p>none</p>
    <sp>none</sp>
    <pct>100</pct>{policy_extra}
  </policy_published>"""


def google_report(domain: str, report_id: str, begin: int, end: int, rows: list[dict]) -> bytes:
    head = head_xml("google.com", "noreply-dmarc-support@google.com", report_id, begin, end, domain,
                    "\n    <extra_contact_info>https://support.google.com/a/answer/2466580</extra_contact_info>",
                    "\n    <np>none</np>")
    return f"""<?xml version="1.0" encoding="UTF-8" ?>
<feedback>{head}{rows_xml(domain, rows)}
</feedback>
""".encode()


def microsoft_report(domain: str, report_id: str, begin: int, end: int, rows: list[dict]) -> bytes:
    head = head_xml("Enterprise Outlook", "dmarcreport@microsoft.com", report_id, begin, end, domain,
                    policy_extra="\n    <fo>0</fo>")
    return f"""<?xml version="1.0"?>
<feedback xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <version>1.0</version>{head}{rows_xml(domain, rows, envelope_to=True)}
</feedback>""".encode()


def dmarcbis_report(domain: str, report_id: str, begin: int, end: int, rows: list[dict]) -> bytes:
    head = head_xml("Mail Fjord", "dmarc@fjord.example", report_id, begin, end, domain)
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<feedback xmlns="urn:ietf:params:xml:ns:dmarc-2.0">
  <version>1.0</version>{head}{rows_xml(domain, rows)}
</feedback>""".encode()


def zipped(name: str, content: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(name, content)
    return buffer.getvalue()


def send_report(running: Running, to: str, subject: str, attachment: tuple[bytes, str, str] | None = None,
                body: str = "This is an aggregate report.", body_type: str = "plain",
                sender: str = "noreply-dmarc-support@google.com") -> None:
    """Mail a report over SMTP as a reporter on the internet would: attachment (bytes, type, name)."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Message-ID"] = f"<{uuid.uuid4().hex}@reporter.example>"
    message.set_content(body, subtype=body_type)
    if attachment is not None:
        content, mime, filename = attachment
        maintype, subtype = mime.split("/")
        message.add_attachment(content, maintype=maintype, subtype=subtype, filename=filename)
    with smtplib.SMTP("127.0.0.1", running.server.smtp_port, timeout=30) as client:
        client.ehlo("mail-reporter.example")
        assert client.send_message(message, from_addr=sender) == {}


def settled_reports(api: httpx.Client, domain: str, expected: int) -> list[dict]:
    """The domain's reports once `expected` of them have been processed by the server."""
    def read() -> list[dict]:
        return ok(api.get("/v1/dmarc/reports", params={"domain": domain, "limit": 200}))["data"]

    reports = wait_until(read, lambda rs: len(rs) >= expected and all(r["status"] != "pending" for r in rs))
    assert len(reports) == expected and all(r["status"] != "pending" for r in reports), reports
    return reports


def now_range(days_ago: int = 1) -> tuple[int, int]:
    end = int(time.time()) - (days_ago - 1) * DAY
    return end - DAY, end - 1


GOOGLE_ROWS = [
    {"ip": "203.0.113.5", "count": 10, "dkim": "pass", "spf": "pass"},
    {"ip": "198.51.100.7", "count": 4, "dkim": "fail", "spf": "fail"},
    {"ip": "2001:db8::25", "count": 2, "dkim": "fail", "spf": "pass"},
]
MICROSOFT_ROWS = [
    {"ip": "198.51.100.7", "count": 3, "dkim": "fail", "spf": "fail"},
    {"ip": "192.0.2.9", "count": 1, "dkim": "fail", "spf": "fail", "disposition": "quarantine",
     "reason": "<reason><type>local_policy</type><comment>arc=fail</comment></reason>"},
]


# the DMARC record -------------------------------------------------------------------------------------
def test_domains_list_a_dmarc_record_whose_reports_come_back_here(api: httpx.Client,
                                                                  dns_server: dnsserver.TestDNSServer) -> None:
    name = f"policy-{uuid.uuid4().hex[:8]}.test"
    domain = ok(api.post("/v1/domains", json={"name": name}), 201)["data"]
    records = ok(api.get(f"/v1/domains/{domain['id']}/records"))["data"]
    [dmarc] = [r for r in records if r["record"] == "DMARC"]
    assert dmarc == {"record": "DMARC", "name": f"_dmarc.{name}", "type": "TXT", "status": "pending",
                     "value": f"v=DMARC1; p=none; rua=mailto:dmarc-reports@{name}", "ttl": "Auto"}

    # Not needed for verification: everything else published verifies the domain, DMARC still pending.
    publish(dns_server, records, skip=("DMARC",))
    result = ok(api.post(f"/v1/domains/{domain['id']}/verify"))["data"]
    assert result["status"] == "verified"
    assert [r["status"] for r in result["records"] if r["record"] == "DMARC"] == ["pending"]

    # The owner's own policy without our address is reported as failed, and blocks nothing.
    dns_server.publish(f"_dmarc.{name}", "TXT", '"v=DMARC1; p=reject; rua=mailto:reports@vendor.example"')
    result = ok(api.post(f"/v1/domains/{domain['id']}/verify"))["data"]
    assert result["status"] == "verified"
    assert [r["status"] for r in result["records"] if r["record"] == "DMARC"] == ["failed"]

    # Their strict policy with our address beside the vendor's is what we asked for.
    dns_server.publish(f"_dmarc.{name}", "TXT",
                       f'"v=DMARC1; p=reject; rua=mailto:reports@vendor.example,mailto:DMARC-Reports@{name}!10m"')
    result = ok(api.post(f"/v1/domains/{domain['id']}/verify"))["data"]
    assert [r["status"] for r in result["records"] if r["record"] == "DMARC"] == ["verified"]


# reports end to end ---------------------------------------------------------------------------------
def test_reports_mailed_to_the_rua_address_are_listed_with_their_figures(
        running: Running, api: httpx.Client, dns_server: dnsserver.TestDNSServer) -> None:
    domain = verified_domain(api, dns_server)
    name = domain["name"]
    [dmarc] = [r for r in domain["records"] if r["record"] == "DMARC"]
    assert dmarc["status"] == "verified"
    rua = f"dmarc-reports@{name}"
    assert rua not in [i["address"] for i in ok(api.get("/v1/inboxes"))["data"]]

    begin, end = now_range()
    google = google_report(name, "12873465012873465", begin, end, GOOGLE_ROWS)
    send_report(running, rua, f"Report domain: {name} Submitter: google.com Report-ID: 12873465012873465",
                (zipped(f"google.com!{name}!{begin}!{end}.xml", google), "application/zip",
                 f"google.com!{name}!{begin}!{end}.zip"))
    microsoft = microsoft_report(name, "a1b2c3d4e5f6", begin, end, MICROSOFT_ROWS)
    send_report(running, rua, f"Report Domain: {name} Submitter: enterprise.protection.outlook.com",
                (gzip.compress(microsoft), "application/gzip",
                 f"enterprise.protection.outlook.com!{name}!{begin}!{end}.xml.gz"),
                sender="dmarcreport@microsoft.com")
    old_begin, old_end = now_range(days_ago=60)
    inline = dmarcbis_report(name, "fjord-1", old_begin, old_end,
                             [{"ip": "192.0.2.200", "count": 5, "dkim": "fail", "spf": "fail"}])
    send_report(running, rua, "DMARC aggregate report", body=inline.decode(), body_type="xml",
                sender="dmarc@fjord.example")

    reports = settled_reports(api, name, 3)
    assert [r["reporterOrg"] for r in reports] == ["Mail Fjord", "Enterprise Outlook", "google.com"]
    fjord, outlook, google_row = reports
    assert all(r["status"] == "parsed" and r["error"] is None for r in reports)
    assert google_row["reporterEmail"] == "noreply-dmarc-support@google.com"
    assert google_row["reportId"] == "12873465012873465"
    assert google_row["dateRangeBegin"] == time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(begin))
    assert google_row["dateRangeEnd"] == time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(end))
    assert google_row["policy"] == {"domain": name, "adkim": "r", "aspf": "r", "p": "none", "sp": "none",
                                    "np": "none", "pct": "100"}
    assert (google_row["recordCount"], google_row["messageCount"], google_row["passCount"],
            google_row["failCount"]) == (3, 16, 12, 4)
    assert (outlook["recordCount"], outlook["messageCount"], outlook["failCount"]) == (2, 4, 4)
    assert (fjord["reportId"], fjord["messageCount"]) == ("fjord-1", 5)

    detail = ok(api.get(f"/v1/dmarc/reports/{outlook['id']}"))["data"]
    assert detail["records"] == [
        {"sourceIp": "198.51.100.7", "count": 3, "disposition": "none", "dkim": "fail", "spf": "fail",
         "dmarc": "fail", "headerFrom": name, "envelopeFrom": f"send.{name}", "envelopeTo": "outlook.com",
         "reasons": [],
         "authResults": {"dkim": [{"domain": name, "selector": "commune", "result": "fail"}],
                         "spf": [{"domain": f"send.{name}", "scope": "mfrom", "result": "fail"}]}},
        {"sourceIp": "192.0.2.9", "count": 1, "disposition": "quarantine", "dkim": "fail", "spf": "fail",
         "dmarc": "fail", "headerFrom": name, "envelopeFrom": f"send.{name}", "envelopeTo": "outlook.com",
         "reasons": [{"type": "local_policy", "comment": "arc=fail"}],
         "authResults": {"dkim": [{"domain": name, "selector": "commune", "result": "fail"}],
                         "spf": [{"domain": f"send.{name}", "scope": "mfrom", "result": "fail"}]}},
    ]
    google_detail = ok(api.get(f"/v1/dmarc/reports/{google_row['id']}"))["data"]
    assert [(r["sourceIp"], r["dmarc"]) for r in google_detail["records"]] == [
        ("203.0.113.5", "pass"), ("198.51.100.7", "fail"), ("2001:db8::25", "pass")]

    # The reports are ordinary mail too, in the inbox the first one created, for a person to read.
    [inbox] = [i for i in ok(api.get("/v1/inboxes"))["data"] if i["address"] == rua]
    messages = ok(api.get("/v1/messages", params={"inbox_id": inbox["id"]}))["data"]
    assert {m["message_id"] for m in messages} == {r["message_id"] for r in reports}

    # The last 30 days: Google's and Microsoft's day; the 60-day-old inline report only with days=90.
    summary = ok(api.get("/v1/dmarc/summary", params={"domain": name}))
    assert {k: summary[k] for k in ("domain", "days", "reports", "failedReports", "totalMessages", "passed",
                                     "failed", "passRate", "dkimPassed", "spfPassed", "quarantined",
                                     "rejected")} == {
        "domain": name, "days": 30, "reports": 2, "failedReports": 0, "totalMessages": 20, "passed": 12,
        "failed": 8, "passRate": 0.6, "dkimPassed": 10, "spfPassed": 12, "quarantined": 1, "rejected": 0}
    assert summary["topFailingSources"] == [{"sourceIp": "198.51.100.7", "count": 7, "reports": 2},
                                            {"sourceIp": "192.0.2.9", "count": 1, "reports": 1}]
    longer = ok(api.get("/v1/dmarc/summary", params={"domain": domain["id"], "days": 90}))
    assert (longer["reports"], longer["totalMessages"], longer["failed"]) == (3, 25, 13)
    assert longer["topFailingSources"][0] == {"sourceIp": "198.51.100.7", "count": 7, "reports": 2}
    assert longer["topFailingSources"][1] == {"sourceIp": "192.0.2.200", "count": 5, "reports": 1}

    # Keyset pages, newest first, by name or by id.
    first = ok(api.get("/v1/dmarc/reports", params={"domain": domain["id"], "limit": 2}))
    assert [r["id"] for r in first["data"]] == [fjord["id"], outlook["id"]] and first["has_more"]
    second = ok(api.get("/v1/dmarc/reports", params={"domain": name, "limit": 2,
                                                      "cursor": first["next_cursor"]}))
    assert [r["id"] for r in second["data"]] == [google_row["id"]] and not second["has_more"]

    # Google sending the same report again does not count it twice.
    send_report(running, rua, "Report domain again", (gzip.compress(google), "application/gzip", "again.xml.gz"))
    again = settled_reports(api, name, 4)[0]
    assert again["status"] == "duplicate" and google_row["id"] in again["error"]
    assert ok(api.get("/v1/dmarc/summary", params={"domain": name}))["totalMessages"] == 20


def test_the_official_cli_shows_reports_and_summary(running: Running, dns_server: dnsserver.TestDNSServer,
                                                    tmp_path: Path) -> None:
    key = running.new_key()
    with running.client(key) as api:
        domain = verified_domain(api, dns_server)
        name = domain["name"]
        begin, end = now_range()
        send_report(running, f"dmarc-reports@{name}", "Report",
                    (zipped("r.xml", google_report(name, "cli-77", begin, end, GOOGLE_ROWS)),
                     "application/zip", f"google.com!{name}!{begin}!{end}.zip"))
        [report] = settled_reports(api, name, 1)

    code, listed = run_cli(running.url, key, tmp_path, "dmarc", "reports", name)
    assert code == 0
    assert [(r["id"], r["reporterOrg"], r["recordCount"]) for r in listed["data"]] == [
        (report["id"], "google.com", 3)]
    code, summary = run_cli(running.url, key, tmp_path, "dmarc", "summary", name, "--days", "7")
    assert code == 0
    assert (summary["totalMessages"], summary["passed"], summary["failed"], summary["days"]) == (16, 12, 4, 7)
    assert summary["topFailingSources"] == [{"sourceIp": "198.51.100.7", "count": 4, "reports": 1}]

    # What a person sees in a terminal: the tables the CLI draws from those fields.
    code, table = run_cli_terminal(running.url, key, tmp_path, "dmarc", "reports", name)
    assert code == 0, table
    [row] = [line for line in table.splitlines() if report["id"] in line]
    assert "google.com" in row and report["dateRangeBegin"] in row and report["dateRangeEnd"] in row
    assert row.split()[-1] == "3"
    code, panel = run_cli_terminal(running.url, key, tmp_path, "dmarc", "summary", name)
    assert code == 0, panel
    shown = {parts[1]: parts[2] for parts in (line.split() for line in panel.splitlines())
             if len(parts) >= 4 and parts[0] == "│"}
    assert (shown["totalMessages"], shown["passed"], shown["failed"], shown["passRate"]) == ("16", "12", "4", "0.75")
    assert "198.51.100.7" in panel


def test_reports_are_the_organisations_own(running: Running, api: httpx.Client,
                                           dns_server: dnsserver.TestDNSServer) -> None:
    domain = verified_domain(api, dns_server)
    begin, end = now_range()
    send_report(running, f"dmarc-reports@{domain['name']}", "Report",
                (gzip.compress(google_report(domain["name"], "own-1", begin, end, GOOGLE_ROWS)),
                 "application/gzip", "r.xml.gz"))
    [report] = settled_reports(api, domain["name"], 1)
    with running.client(running.new_key()) as stranger:
        for ref in (domain["name"], domain["id"]):
            for path in ("/v1/dmarc/reports", "/v1/dmarc/summary"):
                answer = stranger.get(path, params={"domain": ref})
                assert answer.status_code == 404 and answer.json() == {"error": "Domain not found"}
        assert stranger.get(f"/v1/dmarc/reports/{report['id']}").status_code == 404
        assert stranger.get("/v1/dmarc/reports").json() == {"error": "domain is required (a domain name or id)"}
    # The shared domain has no reports of anyone's.
    assert api.get("/v1/dmarc/reports", params={"domain": "commune.localhost"}).status_code == 404
    with running.client(running.new_key(["messages:read"])) as narrow:
        assert narrow.get("/v1/dmarc/reports", params={"domain": domain["name"]}).status_code == 403


# hostile reports ----------------------------------------------------------------------------------------
def claims_50_mb(content: bytes) -> bytes:
    """A zip whose directory says its one XML file is 50 MB (it is not)."""
    data = bytearray(zipped("report.xml", content))
    central = data.rfind(b"PK\x01\x02")
    struct.pack_into("<I", data, central + 24, 50 * 1024 * 1024)
    return bytes(data)


def hostile_reports(name: str) -> list[tuple[str, tuple[bytes, str, str] | None, str]]:
    """(subject, attachment, the reason the report is refused)."""
    begin, end = now_range()
    good = google_report(name, "x", begin, end, GOOGLE_ROWS)
    laughs = (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
              + b"".join(f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10 if i > 1 else "&lol;" * 10}">'.encode()
                         for i in range(1, 10))
              + b"]><feedback>&lol9;</feedback>")
    external = (b'<?xml version="1.0"?><!DOCTYPE feedback [<!ENTITY secret SYSTEM "file:///etc/passwd">]>'
                b"<feedback><report_metadata><org_name>&secret;</org_name></report_metadata></feedback>")
    bomb = zipped("report.xml", b"<feedback>" + b" " * (60 * 1024 * 1024) + b"</feedback>")
    small_bomb = gzip.compress(b"<feedback>" + b"\n" * (8 * 1024 * 1024) + b"</feedback>")
    two = io.BytesIO()
    with zipfile.ZipFile(two, "w") as archive:
        archive.writestr("a.xml", good)
        archive.writestr("b.xml", good)
    return [
        ("billion laughs", (laughs, "application/xml", "laughs.xml"), "document type declaration"),
        ("external entity", (external, "text/xml", "xxe.xml"), "document type declaration"),
        ("zip bomb", (bomb, "application/zip", "bomb.zip"), "larger than 10 MiB"),
        ("gzip bomb", (small_bomb, "application/gzip", "bomb.xml.gz"), "decompression bomb"),
        ("truncated gzip", (gzip.compress(good)[:200], "application/gzip", "cut.xml.gz"), "truncated"),
        ("damaged gzip", (b"\x1f\x8b\x08\x00" + b"\xff" * 300, "application/gzip", "bad.xml.gz"), "damaged"),
        ("claims 50 MB", (claims_50_mb(good), "application/zip", "big.zip"), "declares 52428800 bytes"),
        ("two files", (two.getvalue(), "application/zip", "two.zip"), "exactly one XML file"),
        ("wrong root", (b"<html><body>hello</body></html>", "application/xml", "page.xml"), "root element is <html>"),
        ("malformed", (b"<feedback><report_metadata>", "application/xml", "cut.xml"), "malformed"),
        ("not an IP", (good.replace(b"203.0.113.5", b"not-an-ip"), "application/xml", "ip.xml"),
         "is not an IP address"),
        ("someone else's", (google_report("victim.example", "y", begin, end, GOOGLE_ROWS), "application/xml",
                            "other.xml"), "is about victim.example"),
        ("nothing attached", None, "no report found"),
    ]


def test_hostile_reports_are_stored_flagged_and_survived(running: Running, api: httpx.Client,
                                                         dns_server: dnsserver.TestDNSServer) -> None:
    domain = verified_domain(api, dns_server)
    name = domain["name"]
    rua = f"dmarc-reports@{name}"
    cases = hostile_reports(name)
    for subject, attachment, _ in cases:
        send_report(running, rua, subject, attachment)
    begin, end = now_range()
    send_report(running, rua, "a good one after all that",
                (gzip.compress(google_report(name, "after", begin, end, GOOGLE_ROWS)), "application/gzip", "ok.xml.gz"))

    reports = settled_reports(api, name, len(cases) + 1)
    assert ok(running.client().get("/health"))["status"]
    good, *flagged = reports
    assert good["status"] == "parsed" and good["messageCount"] == 16
    [inbox] = [i for i in ok(api.get("/v1/inboxes"))["data"] if i["address"] == rua]
    messages = ok(api.get("/v1/messages", params={"inbox_id": inbox["id"], "limit": 100}))["data"]
    subjects = {m["message_id"]: m["metadata"]["subject"] for m in messages}
    assert len(subjects) == len(cases) + 1
    for report, (subject, _, reason) in zip(reversed(flagged), cases, strict=True):
        assert report["status"] == "failed", (subject, report)
        assert reason in report["error"], (subject, report["error"])
        assert subjects[report["message_id"]] == subject
        assert report["recordCount"] == 0 and report["reporterOrg"] is None
        assert ok(api.get(f"/v1/dmarc/reports/{report['id']}"))["data"]["records"] == []

    summary = ok(api.get("/v1/dmarc/summary", params={"domain": name}))
    assert (summary["reports"], summary["failedReports"], summary["totalMessages"]) == (1, len(cases), 16)


# restarts and upgrades ----------------------------------------------------------------------------------
def test_reports_received_while_the_worker_was_off_are_parsed_after_a_restart(
        tmp_path: Path, dns_server: dnsserver.TestDNSServer, engine) -> None:
    running = start_server(tmp_path, dns_server, workers_enabled=False, engine=engine)
    try:
        key = running.new_key()
        with running.client(key) as api:
            domain = verified_domain(api, dns_server)
            begin, end = now_range()
            send_report(running, f"dmarc-reports@{domain['name']}", "Report",
                        (gzip.compress(google_report(domain["name"], "r-1", begin, end, GOOGLE_ROWS)),
                         "application/gzip", "r.xml.gz"))
            [pending] = ok(api.get("/v1/dmarc/reports", params={"domain": domain["name"]}))["data"]
            assert pending["status"] == "pending" and pending["reporterOrg"] is None
    finally:
        running.stop()
    running = start_server(tmp_path, dns_server, engine=engine)
    try:
        with running.client(key) as api:
            [parsed] = settled_reports(api, domain["name"], 1)
            assert parsed["id"] == pending["id"] and parsed["status"] == "parsed"
            assert (parsed["reporterOrg"], parsed["messageCount"]) == ("google.com", 16)
    finally:
        running.stop()


def test_upgrade_adds_the_dmarc_record_to_existing_domains(tmp_path: Path,
                                                           dns_server: dnsserver.TestDNSServer) -> None:
    conn = sqlite3.connect(tmp_path / "commune.db", isolation_level=None)
    before = MIGRATIONS.index(DMARC_REPORTS)
    for script in MIGRATIONS[:before]:
        conn.executescript(script)
    conn.execute(f"PRAGMA user_version = {before}")
    conn.execute("INSERT INTO orgs (id, name, created_at) VALUES ('org-old', 'old', '2024-01-01T00:00:00.000Z')")
    conn.execute("INSERT INTO domains (id, org_id, name, status, records, created_at) VALUES"
                 " ('d-old', 'org-old', 'older.test', 'verified', '[{\"record\": \"DKIM\"}]',"
                 " '2024-01-01T00:00:00.000Z')")
    conn.close()
    running = start_server(tmp_path, dns_server)
    try:
        services = running.server.services
        old = running.run(lambda: services.domains.get_domain_any("d-old"))
        assert old["status"] == "verified"
        assert old["records"] == [{"record": "DKIM"}, {
            "record": "DMARC", "name": "_dmarc.older.test", "type": "TXT", "status": "pending", "ttl": "Auto",
            "value": "v=DMARC1; p=none; rua=mailto:dmarc-reports@older.test"}]
        shared = running.run(lambda: services.domains.shared_domain())
        assert "DMARC" not in {r["record"] for r in shared["records"]}
    finally:
        running.stop()
