"""A DMARC aggregate report's bytes (gzip, zip or plain XML) → `AggregateReport`, or `ReportError`.

Reports come from anyone who can send mail, so every step is bounded: at most `MAX_XML_BYTES` of XML
after decompression, a compression ratio guard against bombs, a zip holding exactly one file (its entry
count read from the archive's end record before `zipfile` builds its directory), at most `MAX_RECORDS`
records and `MAX_ELEMENTS` elements, and defusedxml refusing any DTD (so no entity expansion and no
external entities). The XML is read incrementally and each record dropped once read, so memory stays
flat whatever the number of records.
"""

from __future__ import annotations

import io
import ipaddress
import re
import zipfile
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from xml.etree.ElementTree import Element, ParseError

import defusedxml.ElementTree as SafeET
from defusedxml import DTDForbidden, EntitiesForbidden, ExternalReferenceForbidden

MAX_XML_BYTES = 10 * 1024 * 1024
MAX_RECORDS = 10_000
MAX_ELEMENTS = 40 * MAX_RECORDS
MAX_DEPTH = 16
MAX_RATIO = 200
"""Real reports compress 10–50:1; a larger ratio on more than `RATIO_FLOOR` bytes is a bomb."""
RATIO_FLOOR = 1024 * 1024
MAX_LISTED = 20
"""Reasons and per-signature auth results kept per record; more is noise or an attack."""
MAX_EPOCH = 253402300799  # 9999-12-31T23:59:59Z
MAX_COUNT = 2**31 - 1

GZIP_MAGIC = b"\x1f\x8b"
ZIP_MAGIC = b"PK\x03\x04"
ZIP_END = b"PK\x05\x06"
REPORT_TYPES = frozenset({
    "application/gzip", "application/x-gzip", "application/zip", "application/x-zip-compressed",
    "application/x-zip", "application/xml", "text/xml",
})
REPORT_SUFFIXES = (".xml", ".gz", ".gzip", ".zip")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


class ReportError(Exception):
    """The report is refused; the text says why and is shown to the domain's owner."""


@dataclass
class Record:
    source_ip: str
    count: int
    disposition: str
    dkim: str
    spf: str
    header_from: str
    envelope_from: str | None = None
    envelope_to: str | None = None
    reasons: list[dict] = field(default_factory=list)
    auth_results: dict = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """DMARC passes when DKIM or SPF passed aligned, as the reporter evaluated it."""
        return self.dkim == "pass" or self.spf == "pass"


@dataclass
class AggregateReport:
    reporter_org: str
    reporter_email: str | None
    report_id: str
    date_begin: datetime
    date_end: datetime
    policy: dict[str, str]
    records: list[Record]


def find_payload(attachments: list[dict], text: str) -> dict | str | None:
    """The part of a report mail that holds the report: the first attachment that looks like one
    (by media type or file name), else the body when it is XML itself, else None."""
    for attachment in attachments:
        name = (attachment.get("filename") or "").lower()
        if attachment.get("mime_type") in REPORT_TYPES or name.endswith(REPORT_SUFFIXES):
            return attachment
    body = text.lstrip()
    if body.startswith(("<?xml", "<feedback")):
        return body
    return None


def read_report(data: bytes) -> AggregateReport:
    """Decompress (by the bytes' own magic, not the declared type) and parse one report."""
    if data.startswith(GZIP_MAGIC):
        data = _gunzip(data)
    elif data.startswith(ZIP_MAGIC):
        data = _unzip(data)
    return parse_xml(data)


def _too_large(size: str) -> ReportError:
    return ReportError(f"the report is larger than {MAX_XML_BYTES // (1024 * 1024)} MiB of XML ({size})")


def _check_ratio(size: int, compressed: int) -> None:
    if size > RATIO_FLOOR and size > MAX_RATIO * max(compressed, 1):
        raise ReportError(f"compression ratio above {MAX_RATIO}:1 ({size} bytes from {compressed}): refused as a"
                          " decompression bomb")


def _gunzip(data: bytes) -> bytes:
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(data, MAX_XML_BYTES + 1)
    except zlib.error as exc:
        raise ReportError(f"the gzip data is damaged ({exc})") from None
    if len(out) > MAX_XML_BYTES:
        raise _too_large("after gunzip")
    if not inflater.eof:
        raise ReportError("the gzip data is truncated")
    if inflater.unused_data.strip(b"\x00"):
        raise ReportError("the gzip data holds more than one member")
    _check_ratio(len(out), len(data))
    return out


def _zip_entries(data: bytes) -> int:
    """The entry count the archive's end record declares (read before `zipfile` builds its directory)."""
    end = data.rfind(ZIP_END, max(0, len(data) - 65_557))
    if end < 0 or end + 22 > len(data):
        raise ReportError("the zip archive is damaged (no end of central directory)")
    return int.from_bytes(data[end + 10:end + 12], "little")


def _unzip(data: bytes) -> bytes:
    entries = _zip_entries(data)
    if entries != 1:
        raise ReportError(f"a zip report must hold exactly one XML file; this one declares {entries} entries")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            infos = archive.infolist()
            if len(infos) != 1 or infos[0].is_dir():
                raise ReportError("a zip report must hold exactly one XML file")
            info = infos[0]
            if info.flag_bits & 0x1:
                raise ReportError("the zip archive is encrypted")
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise ReportError("the zip archive uses a compression method other than deflate")
            if info.file_size > MAX_XML_BYTES:
                raise _too_large(f"the archive declares {info.file_size} bytes")
            _check_ratio(info.file_size, info.compress_size)
            with archive.open(info) as member:
                out = member.read(MAX_XML_BYTES + 1)
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, NotImplementedError, OSError,
            RuntimeError) as exc:
        raise ReportError(f"the zip archive is damaged ({exc.__class__.__name__})") from None
    if len(out) > MAX_XML_BYTES:
        raise _too_large("after unzip")
    return out


# XML ------------------------------------------------------------------------------------------------------
def _local(tag: object) -> str:
    """A tag without its namespace (`{urn:ietf:params:xml:ns:dmarc-2.0}record` → `record`)."""
    return str(tag).rpartition("}")[2]


def _clean(text: str | None, limit: int = 255) -> str:
    return _CONTROL.sub("", text or "").strip()[:limit]


def _child(element: Element | None, name: str) -> Element | None:
    if element is None:
        return None
    return next((c for c in element if _local(c.tag) == name), None)


def _children(element: Element | None, name: str) -> list[Element]:
    if element is None:
        return []
    return [c for c in element if _local(c.tag) == name][:MAX_LISTED]


def _text(element: Element | None, name: str, limit: int = 255) -> str:
    found = _child(element, name)
    return _clean(found.text if found is not None else None, limit)


def _required(element: Element | None, name: str, where: str, limit: int = 255) -> str:
    value = _text(element, name, limit)
    if not value:
        raise ReportError(f"{where}: <{name}> is missing")
    return value


def _epoch(element: Element | None, name: str) -> datetime:
    raw = _required(element, name, "report_metadata/date_range", 32)
    try:
        value = int(raw)
    except ValueError:
        raise ReportError(f"report_metadata/date_range: <{name}> is not a Unix time") from None
    if not 0 <= value <= MAX_EPOCH:
        raise ReportError(f"report_metadata/date_range: <{name}> is out of range")
    return datetime.fromtimestamp(value, UTC)


def _metadata(element: Element) -> tuple[str, str | None, str, datetime, datetime]:
    where = "report_metadata"
    org = _required(element, "org_name", where)
    email = _text(element, "email") or None
    report_id = _required(element, "report_id", where)
    dates = _child(element, "date_range")
    begin, end = _epoch(dates, "begin"), _epoch(dates, "end")
    if begin > end:
        raise ReportError("report_metadata/date_range: <begin> is after <end>")
    return org, email, report_id, begin, end


def _policy(element: Element) -> dict[str, str]:
    domain = _required(element, "domain", "policy_published").lower().rstrip(".")
    policy = {"domain": domain}
    for name in ("adkim", "aspf", "p", "sp", "np", "pct", "fo"):
        value = _text(element, name, 32)
        if value:
            policy[name] = value
    return policy


def _record(element: Element, number: int) -> Record:
    where = f"record {number}"
    row = _child(element, "row")
    raw_ip = _required(row, "source_ip", where, 64)
    try:
        source_ip = str(ipaddress.ip_address(raw_ip))
    except ValueError:
        raise ReportError(f"{where}: <source_ip> {raw_ip[:40]!r} is not an IP address") from None
    try:
        count = int(_required(row, "count", where, 32))
    except ValueError:
        raise ReportError(f"{where}: <count> is not a number") from None
    if not 0 <= count <= MAX_COUNT:
        raise ReportError(f"{where}: <count> is out of range")
    evaluated = _child(row, "policy_evaluated")
    identifiers = _child(element, "identifiers")
    auth = _child(element, "auth_results")
    return Record(
        source_ip=source_ip,
        count=count,
        disposition=_required(evaluated, "disposition", f"{where} policy_evaluated", 32).lower(),
        dkim=_required(evaluated, "dkim", f"{where} policy_evaluated", 16).lower(),
        spf=_required(evaluated, "spf", f"{where} policy_evaluated", 16).lower(),
        header_from=_text(identifiers, "header_from").lower(),
        envelope_from=_text(identifiers, "envelope_from").lower() or None,
        envelope_to=_text(identifiers, "envelope_to").lower() or None,
        reasons=[{"type": _text(r, "type", 32), "comment": _text(r, "comment")}
                 for r in _children(evaluated, "reason")],
        auth_results={
            "dkim": [{"domain": _text(d, "domain").lower(), "selector": _text(d, "selector"),
                      "result": _text(d, "result", 16).lower()} for d in _children(auth, "dkim")],
            "spf": [{"domain": _text(s, "domain").lower(), "scope": _text(s, "scope", 16),
                     "result": _text(s, "result", 16).lower()} for s in _children(auth, "spf")],
        },
    )


def parse_xml(data: bytes) -> AggregateReport:
    """Parse the XML of one report (RFC 7489 Appendix C, with or without the DMARCbis namespace)."""
    if len(data) > MAX_XML_BYTES:
        raise _too_large(f"{len(data)} bytes")
    root: Element | None = None
    metadata = None
    policy = None
    records: list[Record] = []
    depth = elements = 0
    try:
        for event, element in SafeET.iterparse(io.BytesIO(data), events=("start", "end"), forbid_dtd=True):
            if event == "start":
                depth += 1
                if root is None:
                    root = element
                    if _local(element.tag) != "feedback":
                        raise ReportError(f"not a DMARC aggregate report: the root element is"
                                          f" <{_clean(_local(element.tag), 40)}>, not <feedback>")
                if depth > MAX_DEPTH:
                    raise ReportError("the XML is nested too deeply")
                continue
            depth -= 1
            elements += 1
            if elements > MAX_ELEMENTS:
                raise ReportError(f"the report has more than {MAX_ELEMENTS} XML elements")
            if depth != 1:
                continue
            name = _local(element.tag)
            if name == "report_metadata":
                metadata = _metadata(element)
            elif name == "policy_published":
                policy = _policy(element)
            elif name == "record":
                if len(records) >= MAX_RECORDS:
                    raise ReportError(f"the report has more than {MAX_RECORDS} records")
                records.append(_record(element, len(records) + 1))
            assert root is not None
            root.remove(element)  # read and done: memory stays flat however many records follow
    except DTDForbidden:
        raise ReportError("XML with a document type declaration (DTD) is refused") from None
    except EntitiesForbidden:
        raise ReportError("XML entity declarations are refused") from None
    except ExternalReferenceForbidden:
        raise ReportError("XML external references are refused") from None
    except ParseError as exc:
        raise ReportError(f"the XML is malformed ({_clean(str(exc), 120)})") from None
    if metadata is None:
        raise ReportError("<report_metadata> is missing")
    if policy is None:
        raise ReportError("<policy_published> is missing")
    org, email, report_id, begin, end = metadata
    return AggregateReport(org, email, report_id, begin, end, policy, records)
