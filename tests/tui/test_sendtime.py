"""The "send later" time parser: relative times, named days, clock times and ISO 8601, in a local zone
with daylight saving, against a fixed now (Sunday 15 March 2026, 13:00 in Berlin)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from commune_tui.sendtime import SendTimeError, describe, parse_send_time, until, wire

BERLIN = ZoneInfo("Europe/Berlin")
NOW = datetime(2026, 3, 15, 13, 0, tzinfo=BERLIN)  # a Sunday; clocks go forward on 29 March


def at(text: str, now: datetime = NOW) -> str:
    return wire(parse_send_time(text, now))


@pytest.mark.parametrize(("text", "expected"), [
    ("in 2h", "2026-03-15T15:00:00+01:00"),
    ("in 30m", "2026-03-15T13:30:00+01:00"),
    ("In 30 Minutes", "2026-03-15T13:30:00+01:00"),
    ("in 1h 30m", "2026-03-15T14:30:00+01:00"),
    ("in 1h30m", "2026-03-15T14:30:00+01:00"),
    ("in 2 hours and 15 minutes", "2026-03-15T15:15:00+01:00"),
    ("in 1.5h", "2026-03-15T14:30:00+01:00"),
    ("in 1d", "2026-03-16T13:00:00+01:00"),
    ("in 3 days", "2026-03-18T13:00:00+01:00"),
    ("in 2w", "2026-03-29T14:00:00+02:00"),  # 14 days of real time, across the change to summer time
    ("in 1 week", "2026-03-22T13:00:00+01:00"),
])
def test_relative_times(text: str, expected: str) -> None:
    assert at(text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("tomorrow 09:00", "2026-03-16T09:00:00+01:00"),
    ("tomorrow 9am", "2026-03-16T09:00:00+01:00"),
    ("tomorrow at 5:30pm", "2026-03-16T17:30:00+01:00"),
    ("tomorrow", "2026-03-16T09:00:00+01:00"),
    ("Tomorrow  18.45", "2026-03-16T18:45:00+01:00"),
    ("today 17:00", "2026-03-15T17:00:00+01:00"),
    ("monday 9am", "2026-03-16T09:00:00+01:00"),
    ("mon 09:00", "2026-03-16T09:00:00+01:00"),
    ("next friday 14:30", "2026-03-20T14:30:00+01:00"),
    ("wednesday", "2026-03-18T09:00:00+01:00"),
    ("tue 9", "2026-03-17T09:00:00+01:00"),
    ("sunday 14:00", "2026-03-15T14:00:00+01:00"),  # today, still ahead
    ("sunday 9am", "2026-03-22T09:00:00+01:00"),  # today's has passed: a week on
    ("monday 12am", "2026-03-16T00:00:00+01:00"),
    ("monday 12pm", "2026-03-16T12:00:00+01:00"),
    ("monday 09:00 ", "2026-03-16T09:00:00+01:00"),
])
def test_named_days(text: str, expected: str) -> None:
    assert at(text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("14:00", "2026-03-15T14:00:00+01:00"),  # still ahead today
    ("09:00", "2026-03-16T09:00:00+01:00"),  # passed today: tomorrow
    ("9am", "2026-03-16T09:00:00+01:00"),
    ("at 21h30", "2026-03-15T21:30:00+01:00"),
    ("13:00", "2026-03-16T13:00:00+01:00"),  # exactly now is not ahead
    ("11:59 pm", "2026-03-15T23:59:00+01:00"),
])
def test_clock_times_today_or_tomorrow(text: str, expected: str) -> None:
    assert at(text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("2026-03-16T09:00", "2026-03-16T09:00:00+01:00"),
    ("2026-03-16 09:00", "2026-03-16T09:00:00+01:00"),
    ("2026-03-16T09:00:30", "2026-03-16T09:00:30+01:00"),
    ("2026-03-30T09:00", "2026-03-30T09:00:00+02:00"),  # local summer time applies after the change
    ("2026-03-16T09:00:00+05:00", "2026-03-16T05:00:00+01:00"),
    ("2026-03-16T08:00:00Z", "2026-03-16T09:00:00+01:00"),
    ("2026-03-16t08:00:00z", "2026-03-16T09:00:00+01:00"),
])
def test_iso_8601(text: str, expected: str) -> None:
    assert at(text) == expected


@pytest.mark.parametrize(("text", "says"), [
    ("", "Type when to send"),
    ("   ", "Type when to send"),
    ("whenever", "Cannot read"),
    ("in", "Cannot read"),
    ("in two hours", "Cannot read"),
    ("in 2 fortnights", "use m, h, d or w"),
    ("in 2h later", "use m, h, d or w"),
    ("9", "Cannot read"),  # a bare number alone is too ambiguous
    ("tomorrow noonish", "as a time of day"),
    ("tomorrow 25:00", "not a time of day"),
    ("monday 13pm", "from 1 to 12"),
    ("24:00", "not a time of day"),
    ("12:60", "not a time of day"),
    ("2026-13-01T09:00", "not a valid ISO 8601"),
    ("2026-03-16", "has no time"),
])
def test_unreadable_text_says_why(text: str, says: str) -> None:
    with pytest.raises(SendTimeError, match=says):
        parse_send_time(text, NOW)


@pytest.mark.parametrize("text", [
    "today 09:00", "2026-03-15T12:59", "2026-03-15T11:00:00Z", "2025-12-24T18:00", "in 0m", "today",
])
def test_a_time_that_has_passed_is_refused(text: str) -> None:
    with pytest.raises(SendTimeError, match="has already passed"):
        parse_send_time(text, NOW)


@pytest.mark.parametrize("text", ["in 31d", "in 5w", "2026-04-15T13:01", "2027-01-01T09:00", "in 721h"])
def test_more_than_30_days_ahead_is_refused(text: str) -> None:
    with pytest.raises(SendTimeError, match="more than 30 days ahead"):
        parse_send_time(text, NOW)


def test_exactly_30_days_ahead_is_accepted() -> None:
    # 30 days of real time: summer time starts in between, so the wall clock shows 14:00.
    assert at("in 30d") == "2026-04-14T14:00:00+02:00"
    assert at("in 720h") == "2026-04-14T14:00:00+02:00"


def test_fixed_offset_zone_and_utc() -> None:
    now = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)
    assert at("tomorrow 09:00", now) == "2026-03-16T09:00:00+00:00"
    tokyo = datetime(2026, 3, 15, 23, 30, tzinfo=timezone(timedelta(hours=9)))
    assert at("in 1h", tokyo) == "2026-03-16T00:30:00+09:00"
    assert at("09:00", tokyo) == "2026-03-16T09:00:00+09:00"
    assert at("2026-03-16T00:00:00Z", tokyo) == "2026-03-16T09:00:00+09:00"


def test_the_year_and_week_turn() -> None:
    new_year_eve = datetime(2026, 12, 31, 22, 0, tzinfo=BERLIN)  # a Thursday
    assert at("tomorrow 10:00", new_year_eve) == "2027-01-01T10:00:00+01:00"
    assert at("01:00", new_year_eve) == "2027-01-01T01:00:00+01:00"
    assert at("thursday 9am", new_year_eve) == "2027-01-07T09:00:00+01:00"
    assert describe(parse_send_time("in 3h", new_year_eve), new_year_eve) == "Fri 01 Jan 2027 01:00 (in 3h)"


def test_naive_now_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        parse_send_time("in 2h", datetime(2026, 3, 15, 13, 0))


def test_describe_and_until() -> None:
    assert describe(parse_send_time("tomorrow 9am", NOW), NOW) == "Mon 16 Mar 09:00 (in 20h)"
    assert until(NOW + timedelta(minutes=125), NOW) == "in 2h 5m"
    assert until(NOW + timedelta(days=3, hours=4), NOW) == "in 3d 4h"
    assert until(NOW + timedelta(days=2), NOW) == "in 2d"
    assert until(NOW + timedelta(seconds=20), NOW) == "now"
    assert until(NOW - timedelta(minutes=5), NOW) == "5m ago"
    # Real time across the change to summer time: a wall-clock day is 23 hours.
    saturday = datetime(2026, 3, 28, 12, 0, tzinfo=BERLIN)
    assert until(datetime(2026, 3, 29, 12, 0, tzinfo=BERLIN), saturday) == "in 23h"


def test_error_messages_say_when() -> None:
    with pytest.raises(SendTimeError) as caught:
        parse_send_time("today 10:00", NOW)
    assert str(caught.value) == "Sun 15 Mar 10:00 (3h ago) has already passed"
