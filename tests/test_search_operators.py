"""Search in Mailpit's language: operators, quoting, negation, substrings (CJK and file names), paging
with a total, through the real server."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.mailtools import ingest, make_inbox


def mail(running, inbox: dict, subject: str, text: str = "", **fields: object) -> dict:
    time.sleep(0.002)  # distinct arrival times keep "newest first" well defined
    message, new = ingest(running, inbox["id"], subject=subject, text=text or f"body of {subject}", **fields)
    assert new
    return message


@pytest.fixture
def mailbox(running, api) -> tuple[httpx.Client, dict, dict]:
    inbox = make_inbox(api)
    made = {
        "invoice": mail(running, inbox, "Invoice 4521 for March", "Please pay by Friday, 10:30 latest",
                        sender="billing@shop.example", sender_name="Shop Billing", to=["desk@ours.example"],
                        cc=["boss@ours.example"]),
        "report": mail(running, inbox, "Quarterly report", "The quarterly numbers are attached",
                       sender="cfo@corp.example", to=["desk@ours.example"],
                       attachments=[("quarterly-report-2024.pdf", "application/pdf", b"%PDF-1.4 numbers")]),
        "meeting": mail(running, inbox, "明日の会議について", "会議は午後三時からです。資料を確認してください。",
                        sender="tanaka@example.jp", sender_name="田中 太郎"),
        "korean": mail(running, inbox, "회의록 공유", "오늘 회의록을 공유합니다", sender="kim@example.kr"),
        "chinese": mail(running, inbox, "项目进度报告", "本周项目进度顺利，请查看附件。", sender="li@example.cn",
                        attachments=[("进度表.xlsx", "application/octet-stream", b"sheet")]),
        "phrase": mail(running, inbox, "Report draft", "numbers quarterly attached in the draft",
                       sender="intern@corp.example", to=["cfo@corp.example"]),
        "umlaut": mail(running, inbox, "Ärger im Büro", "Die Straße ist gesperrt", sender="jg@example.de",
                       sender_name="Jürgen Groß"),
        "link": mail(running, inbox, "Reset link", "Open http://reset.example/path to continue",
                     sender="noreply@service.example"),
    }
    return api, inbox, made


def found(api: httpx.Client, inbox: dict, q: str, **params: object) -> list[str]:
    response = api.get("/v1/search/threads", params={"q": q, "inbox_id": inbox["id"], **params})
    assert response.status_code == 200, (q, response.text)
    return [hit["subject"] for hit in response.json()["data"]]


CASES = [
    # words: substrings of subject, body, sender and attachment file names, any case
    ("invoice", ["Invoice 4521 for March"]),
    ("INVOICE", ["Invoice 4521 for March"]),
    ("voic", ["Invoice 4521 for March"]),
    ("quarterly", ["Report draft", "Quarterly report"]),
    ("report-2024", ["Quarterly report"]),
    ("quarterly-report-2024.pdf", ["Quarterly report"]),
    ("进度表", ["项目进度报告"]),
    ("xlsx", ["项目进度报告"]),
    ("corp.example", ["Report draft", "Quarterly report"]),
    ("10:30", ["Invoice 4521 for March"]),
    ("http://reset.example/path", ["Reset link"]),
    # Chinese, Japanese and Korean text: substrings with no spaces around them
    ("会議", ["明日の会議について"]),
    ("会議について", ["明日の会議について"]),
    ("資料を確認", ["明日の会議について"]),
    ("三時", ["明日の会議について"]),
    ("회의록", ["회의록 공유"]),
    ("공유합니다", ["회의록 공유"]),
    ("项目进度", ["项目进度报告"]),
    ("进度", ["项目进度报告"]),
    # every term holds for one message; quoting keeps a phrase together
    ("quarterly attached", ["Report draft", "Quarterly report"]),
    ('"quarterly numbers"', ["Quarterly report"]),
    ('"numbers quarterly"', ["Report draft"]),
    ('"numbers are attached" draft', []),
    # negation
    ("quarterly -draft", ["Quarterly report"]),
    ("quarterly -subject:draft", ["Quarterly report"]),
    ('quarterly -"numbers are"', ["Report draft"]),
    # operators
    ("from:billing@shop.example", ["Invoice 4521 for March"]),
    ("from:shop", ["Invoice 4521 for March"]),
    ('from:"shop billing"', ["Invoice 4521 for March"]),
    ("from:田中", ["明日の会議について"]),
    ("from:corp.example -from:intern", ["Quarterly report"]),
    ("to:boss@ours.example", ["Invoice 4521 for March"]),
    ("to:desk@ours.example", ["Quarterly report", "Invoice 4521 for March"]),
    ("to:cfo", ["Report draft"]),
    ("subject:report", ["Report draft", "Quarterly report"]),
    ('subject:"quarterly report"', ["Quarterly report"]),
    ("SUBJECT:Reset", ["Reset link"]),
    ("subject:会議", ["明日の会議について"]),
    ("has:attachment", ["项目进度报告", "Quarterly report"]),
    ("has:attachment quarterly", ["Quarterly report"]),
    ("-has:attachment subject:report", ["Report draft"]),
    ("after:2000-01-01 subject:invoice", ["Invoice 4521 for March"]),
    ("before:2000-01-01", []),
    ("before:2999-01-01T00:00:00Z subject:reset", ["Reset link"]),
    ("-before:2000-01-01 subject:reset", ["Reset link"]),
    # any case, beyond ASCII too
    ("ärger", ["Ärger im Büro"]),
    ("BÜRO", ["Ärger im Büro"]),
    ("subject:ÄRGER", ["Ärger im Büro"]),
    ("from:jürgen", ["Ärger im Büro"]),
    ("from:groß", ["Ärger im Büro"]),
    # a word that only looks like an operator stays a word
    ("unknown:thing", []),
]


@pytest.mark.parametrize(("q", "expected"), CASES, ids=[c[0] for c in CASES])
def test_search_language(mailbox, q, expected) -> None:
    api, inbox, _ = mailbox
    assert found(api, inbox, q) == expected


def test_label_and_state_operators(running, mailbox) -> None:
    api, inbox, made = mailbox
    assert api.patch(f"/v1/messages/{made['invoice']['id']}", json={"remove_labels": ["unread"],
                                                                      "add_labels": ["flagged", "billing"]}).status_code == 200
    assert api.patch(f"/v1/threads/{made['link']['thread_id']}", json={"add_labels": ["trash"]}).status_code == 200
    assert found(api, inbox, "is:flagged") == ["Invoice 4521 for March"]
    assert found(api, inbox, "is:read") == ["Invoice 4521 for March"]
    assert "Invoice 4521 for March" not in found(api, inbox, "is:unread")
    assert len(found(api, inbox, "is:unread")) == 6  # the trash is left out
    assert found(api, inbox, "label:billing") == ["Invoice 4521 for March"]
    assert found(api, inbox, "label:BILLING is:flagged from:shop") == ["Invoice 4521 for March"]
    assert "Invoice 4521 for March" not in found(api, inbox, "-label:billing is:unflagged")
    # The trash is searched only when asked for.
    assert found(api, inbox, "reset") == []
    assert found(api, inbox, "reset label:trash") == ["Reset link"]
    assert found(api, inbox, "reset", labels="trash") == ["Reset link"]
    assert found(api, inbox, "subject:report", exclude_labels="flagged") == ["Report draft", "Quarterly report"]


@pytest.mark.parametrize(("q", "word"), [
    ("is:weird", "is:"), ("has:pets", "has:"), ("before:yesterday", "before:"), ("after:2024-13-45", "after:"),
    ('label:"a,b"', "label:"), ("auth:maybe", "auth:"), ('subject:""', "subject:"),
])
def test_bad_operators_are_400(mailbox, q, word) -> None:
    api, inbox, _ = mailbox
    response = api.get("/v1/search/threads", params={"q": q, "inbox_id": inbox["id"]})
    assert response.status_code == 400, response.text
    assert word in response.json()["error"]


def test_paging_with_a_total(running, api) -> None:
    inbox = make_inbox(api)
    for number in range(25):
        mail(running, inbox, f"Ticket {number:02d}", "needle in the haystack")
    mail(running, inbox, "Other", "nothing to see")
    seen, cursor, pages = [], None, 0
    while True:
        params = {"q": "needle", "inbox_id": inbox["id"], "limit": 10, **({"cursor": cursor} if cursor else {})}
        body = api.get("/v1/search/threads", params=params).json()
        assert body["total"] == 25 and body["total_exact"] is True
        seen += [hit["subject"] for hit in body["data"]]
        pages += 1
        if not body["has_more"]:
            assert body["next_cursor"] is None
            break
        cursor = body["next_cursor"]
    assert pages == 3
    assert seen == [f"Ticket {n:02d}" for n in range(24, -1, -1)]
    other = api.get("/v1/search/threads", params={"q": "haystack", "inbox_id": inbox["id"], "cursor": cursor})
    assert other.status_code == 400 and "different list" in other.json()["error"]
    assert api.get("/v1/search/threads", params={"q": "nothing-like-this", "inbox_id": inbox["id"]}).json() == {
        "data": [], "total": 0, "total_exact": True, "next_cursor": None, "has_more": False}


def test_a_common_word_is_counted_up_to_a_bound(running, api, monkeypatch) -> None:
    monkeypatch.setattr("backend.store.mail_reads.SEARCH_TOTAL_SCAN", 6)
    inbox = make_inbox(api)
    for number in range(12):
        mail(running, inbox, f"Common {number:02d}", "everywhere")
    first = api.get("/v1/search/threads", params={"q": "everywhere", "inbox_id": inbox["id"], "limit": 2}).json()
    assert (first["total"], first["total_exact"]) == (6, False)  # at least six
    seen, cursor = [h["subject"] for h in first["data"]], first["next_cursor"]
    while cursor:
        body = api.get("/v1/search/threads", params={"q": "everywhere", "inbox_id": inbox["id"], "limit": 5,
                                                      "cursor": cursor}).json()
        seen += [h["subject"] for h in body["data"]]
        cursor = body["next_cursor"]
    assert seen == [f"Common {n:02d}" for n in range(11, -1, -1)]
    everything = api.get("/v1/search/threads", params={"q": "everywhere", "inbox_id": inbox["id"], "limit": 20}).json()
    assert (everything["total"], everything["total_exact"]) == (12, True)


def test_a_thread_counts_once_with_its_matching_messages_as_score(running, api) -> None:
    inbox = make_inbox(api)
    mail(running, inbox, "Budget", "budget v1", smtp_message_id="<budget@example.net>")
    mail(running, inbox, "Re: Budget", "budget v2", in_reply_to="<budget@example.net>")
    mail(running, inbox, "Agreed", "fine by me", in_reply_to="<budget@example.net>")
    body = api.get("/v1/search/threads", params={"q": "budget", "inbox_id": inbox["id"]}).json()
    assert body["total"] == 1
    [hit] = body["data"]
    assert hit["score"] == 2 and hit["message_count"] == 3


def test_search_never_crosses_organisations_with_operators(running, api) -> None:
    inbox = make_inbox(api)
    mail(running, inbox, "Secret plan", "会議の秘密", sender="ceo@ours.example")
    with running.client(running.new_key()) as stranger:
        make_inbox(stranger)
        for q in ("secret", "from:ceo", "会議", "秘密", "has:attachment", "is:unread", "-nothing"):
            body = stranger.get("/v1/search/threads", params={"q": q}).json()
            assert body["data"] == [] and body["total"] == 0, q
