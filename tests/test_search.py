"""Search: FTS5 over subjects, bodies and senders, grouped to threads, newest match first."""

from __future__ import annotations

from commune.types import SearchResult

from tests.mailtools import ingest, make_inbox


def test_search_finds_threads_by_subject_body_and_sender(running, api) -> None:
    inbox = make_inbox(api)
    invoice, _ = ingest(running, inbox["id"], subject="Invoice 4521", text="Please pay by Friday",
                        smtp_message_id="<s1@shop.example>", sender="billing@shop.example")
    ingest(running, inbox["id"], subject="Re: Invoice 4521", text="Paid today, thanks",
           in_reply_to="<s1@shop.example>", sender="me@home.example")
    shipping, _ = ingest(running, inbox["id"], subject="Shipping update", text="Your parcel is on its way",
                         sender="tracking@courier.example")

    def search(q: str, **params: object) -> list[dict]:
        response = api.get("/v1/search/threads", params={"q": q, "inbox_id": inbox["id"], **params})
        assert response.status_code == 200, response.text
        return response.json()["data"]

    [hit] = search("invoice")
    assert hit["thread_id"] == invoice["thread_id"]
    result = SearchResult.model_validate(hit)
    assert result.message_count == 2 and result.subject == "Invoice 4521"
    assert result.last_activity and result.snippet == "Paid today, thanks"
    assert [h["thread_id"] for h in search("parcel")] == [shipping["thread_id"]]
    assert [h["thread_id"] for h in search("courier")] == [shipping["thread_id"]]
    assert [h["thread_id"] for h in search("PAID friday")] == []
    newest_first = [h["thread_id"] for h in search("your OR invoice")]
    assert newest_first == []  # OR is a word here, not an operator
    assert [h["thread_id"] for h in search("paid thanks")] == [invoice["thread_id"]]
    both = api.get("/v1/search/threads", params={"q": "example", "inbox_id": inbox["id"]}).json()["data"]
    assert [h["thread_id"] for h in both] == [shipping["thread_id"], invoice["thread_id"]]
    assert len(search("example", limit=1)) == 1


def test_query_syntax_cannot_break_search(running, api) -> None:
    inbox = make_inbox(api)
    ingest(running, inbox["id"], subject='He said "hi" (twice)', text="a-b c*d NEAR(x y)")
    for q in ('"', 'hi"', "(twice", "c*", "NEAR(x", "a-b", "AND", "^", "subject:hi", "*", "\x00", "hi\x00there"):
        response = api.get("/v1/search/threads", params={"q": q, "inbox_id": inbox["id"]})
        assert response.status_code == 200, q
    found = api.get("/v1/search/threads", params={"q": '"hi"', "inbox_id": inbox["id"]}).json()["data"]
    assert len(found) == 1


def test_search_stays_inside_the_organisation(running, api) -> None:
    inbox = make_inbox(api)
    ingest(running, inbox["id"], subject="Confidential merger", text="zebra-kiwi plans")
    with running.client(running.new_key()) as stranger:
        theirs = make_inbox(stranger)
        assert stranger.get("/v1/search/threads", params={"q": "merger"}).json()["data"] == []
        assert stranger.get("/v1/search/threads", params={"q": "merger", "inbox_id": inbox["id"]}).status_code == 404
        assert stranger.get("/v1/search/threads", params={"q": "merger", "inbox_id": theirs["id"]}).json()["data"] == []
    assert len(api.get("/v1/search/threads", params={"q": "merger"}).json()["data"]) == 1
    assert len(api.get("/v1/search/threads", params={"q": "merger", "domain_id": inbox["domain_id"]})
               .json()["data"]) == 1


def test_bad_search_input(running, api) -> None:
    for params, field in (({}, "q"), ({"q": "  "}, "q"), ({"q": "x" * 501}, "q"),
                          ({"q": "a", "limit": 0}, "limit"), ({"q": "a", "limit": 101}, "limit")):
        response = api.get("/v1/search/threads", params=params)
        assert response.status_code == 400, params
        assert field in response.json()["error"]


def test_search_over_many_separate_commits_finds_exactly_the_matching_messages(running, api) -> None:
    """Each message committed alone leaves the search indexes a segment of its own, and they merge as
    they pile up (SQLite: eight of a size); every word still finds exactly the messages holding it."""
    inbox = make_inbox(api)
    words = ["amber", "basalt", "cobalt", "dune"]
    expected: dict[str, set[str]] = {word: set() for word in words}
    for n in range(60):
        chosen = [word for i, word in enumerate(words) if n % (i + 2) == 0]
        stored, _ = ingest(running, inbox["id"], subject=f"Note {n}", text=" ".join(chosen) or "nothing here",
                           sender=f"s{n}@example.net")
        for word in chosen:
            expected[word].add(stored["thread_id"])
    for word in words:
        found = api.get("/v1/search/threads", params={"q": word, "inbox_id": inbox["id"], "limit": 100}).json()["data"]
        assert {hit["thread_id"] for hit in found} == expected[word], word
    if running.server.services.database.engine == "sqlite":
        config = running.run(lambda: {table: running.server.services.database.one(
            f"SELECT v FROM {table}_config WHERE k = 'automerge'")[0] for table in ("messages_trigram", "messages_fts")})
        assert config == {"messages_trigram": 8, "messages_fts": 8}
