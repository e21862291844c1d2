"""When to send: `in 2h`, `tomorrow 09:00`, `monday 9am`, `17:30` or ISO 8601, read in the local zone.

Pure functions (no textual): the composer's "send later" prompt and its tests use them with a fixed
`now`. Times without a date or offset are wall-clock times in `now`'s zone, so a zone with daylight
saving (a `ZoneInfo`) gives the right offset on either side of a change.
"""

from __future__ import annotations

import os
import re
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

MAX_AHEAD = timedelta(days=30)
"""The server refuses a `send_at` further ahead than this; saying so before sending is kinder."""

EXAMPLES = "in 2h · in 30m · tomorrow 09:00 · monday 9am · 17:30 · 2026-03-16T09:00+01:00"

_UNITS = {
    "m": 60, "min": 60, "mins": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hr": 3600, "hrs": 3600, "hour": 3600, "hours": 3600,
    "d": 86400, "day": 86400, "days": 86400,
    "w": 604800, "week": 604800, "weeks": 604800,
}
_AMOUNT = re.compile(r"(\d+(?:\.\d+)?)\s*([a-z]+)")
_CLOCK = re.compile(r"^(\d{1,2})(?:[:.h](\d{2}))?\s*(am|pm)?$")
_WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
DEFAULT_TIME = time(9, 0)
"""`tomorrow` or `friday` without a time means the start of a working day."""


class SendTimeError(ValueError):
    """The text is not a time we can send at; the message says why, worded for the user."""


def local_zone() -> tzinfo:
    """The machine's zone with its daylight-saving rules (`TZ`, then /etc/localtime), or else its
    current fixed offset."""
    candidates = [os.environ.get("TZ", "").removeprefix(":")]
    localtime = Path("/etc/localtime")
    if localtime.is_symlink():
        candidates.append(str(localtime.resolve()).split("zoneinfo/", 1)[-1])
    for key in candidates:
        if key:
            try:
                return ZoneInfo(key)
            except (ZoneInfoNotFoundError, ValueError):
                continue
    return datetime.now().astimezone().tzinfo or ZoneInfo("UTC")


def parse_send_time(text: str, now: datetime) -> datetime:
    """The moment `text` names, as an aware datetime in `now`'s zone; raises `SendTimeError` for text
    it cannot read, a time that has passed, or one more than 30 days ahead."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    words = " ".join(text.strip().lower().split())
    if not words:
        raise SendTimeError(f"Type when to send, e.g. {EXAMPLES}")
    moment = _relative(words, now) or _named_day(words, now) or _clock_only(words, now) or _iso(text, now)
    if moment is None:
        raise SendTimeError(f"Cannot read {text.strip()!r} as a time. Try: {EXAMPLES}")
    if _elapsed(now, moment) <= timedelta(0):
        raise SendTimeError(f"{describe(moment, now)} has already passed")
    if _elapsed(now, moment) > MAX_AHEAD:
        raise SendTimeError(f"{describe(moment, now)} is more than 30 days ahead")
    return moment


def _relative(words: str, now: datetime) -> datetime | None:
    """`in 2h`, `in 30 minutes`, `in 1h 30m`, `in 2 days`."""
    if not words.startswith("in "):
        return None
    rest = words[3:].replace(" and ", " ").replace(",", " ").strip()
    seconds = 0.0
    position = 0
    for match in _AMOUNT.finditer(rest):
        if rest[position:match.start()].strip() or match.group(2) not in _UNITS:
            raise SendTimeError(f"Cannot read {words!r}: use m, h, d or w, e.g. in 90m, in 2h, in 1d")
        seconds += float(match.group(1)) * _UNITS[match.group(2)]
        position = match.end()
    if position == 0 or rest[position:].strip():
        raise SendTimeError(f"Cannot read {words!r}: use m, h, d or w, e.g. in 90m, in 2h, in 1d")
    return (now.astimezone(UTC) + timedelta(seconds=seconds)).astimezone(now.tzinfo)


def _clock(words: str, bare_hour: bool = False) -> time | None:
    """`09:00`, `9.30`, `9am`, `9:30 pm`, `21h30` (and `9` when `bare_hour`): a wall-clock time."""
    match = _CLOCK.match(words)
    if not match:
        return None
    hour, minute, half = int(match.group(1)), int(match.group(2) or 0), match.group(3)
    if half:
        if not 1 <= hour <= 12:
            raise SendTimeError(f"{words!r}: with am/pm the hour runs from 1 to 12")
        hour = hour % 12 + (12 if half == "pm" else 0)
    elif match.group(2) is None and not bare_hour:
        return None  # alone, a bare number is too ambiguous to be a time
    if hour > 23 or minute > 59:
        raise SendTimeError(f"{words!r} is not a time of day")
    return time(hour, minute)


def _at(day: date, clock: time, now: datetime) -> datetime:
    """`clock` on `day` as the wall clock in `now`'s zone shows it."""
    return datetime.combine(day, clock).replace(tzinfo=now.tzinfo)


def _named_day(words: str, now: datetime) -> datetime | None:
    """`today 17:00`, `tomorrow`, `tomorrow 9am`, `monday`, `next fri 14:30`."""
    head, _, rest = words.removeprefix("next ").partition(" ")
    rest = rest.removeprefix("at ").strip()
    today = now.date()
    if head == "today":
        days = [today]
    elif head == "tomorrow":
        days = [today + timedelta(days=1)]
    else:
        weekday = next((i for i, name in enumerate(_WEEKDAYS) if len(head) >= 3 and name.startswith(head)),
                       None)
        if weekday is None:
            return None
        ahead = (weekday - today.weekday()) % 7
        # The coming such day; today only while its time is still ahead, else a week on.
        days = [today + timedelta(days=ahead), today + timedelta(days=ahead + 7)]
    clock = DEFAULT_TIME if not rest else _clock(rest, bare_hour=True)
    if clock is None:
        raise SendTimeError(f"Cannot read {rest!r} as a time of day: try 09:00 or 9am")
    candidates = [_at(day, clock, now) for day in days]
    return next((c for c in candidates if _elapsed(now, c) > timedelta(0)), candidates[0])


def _clock_only(words: str, now: datetime) -> datetime | None:
    """`17:30`, `9am`: today if that is still ahead, otherwise tomorrow."""
    clock = _clock(words.removeprefix("at ").strip())
    if clock is None:
        return None
    moment = _at(now.date(), clock, now)
    return moment if _elapsed(now, moment) > timedelta(0) else _at(now.date() + timedelta(days=1), clock, now)


def _iso(text: str, now: datetime) -> datetime | None:
    """ISO 8601 with a time, with or without an offset (`Z` too); without one it is local time."""
    value = text.strip()
    if not re.match(r"^\d{4}-\d{2}-\d{2}", value):
        return None
    try:
        moment = datetime.fromisoformat(value.upper())
    except ValueError:
        raise SendTimeError(f"{value!r} is not a valid ISO 8601 date and time") from None
    if len(value) <= 10:
        raise SendTimeError(f"{value!r} has no time: add one, e.g. {value}T09:00")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=now.tzinfo)
    return moment.astimezone(now.tzinfo)


def describe(moment: datetime, now: datetime) -> str:
    """`Mon 16 Mar 09:00 (in 21h)`: the time in `now`'s zone with how far away it is."""
    local = moment.astimezone(now.tzinfo)
    label = local.strftime("%a %d %b %H:%M")
    if local.year != now.year:
        label = local.strftime("%a %d %b %Y %H:%M")
    return f"{label} ({until(moment, now)})"


def until(moment: datetime, now: datetime) -> str:
    """`in 2h 5m`, `in 3d 4h`, `now`, `5m ago`: a short distance in time."""
    seconds = int(_elapsed(now, moment).total_seconds())
    if abs(seconds) < 60:
        return "now"
    minutes = abs(seconds) // 60
    days, hours, mins = minutes // 1440, minutes % 1440 // 60, minutes % 60
    if days:
        span = f"{days}d {hours}h" if hours else f"{days}d"
    elif hours:
        span = f"{hours}h {mins}m" if mins else f"{hours}h"
    else:
        span = f"{mins}m"
    return f"in {span}" if seconds > 0 else f"{span} ago"


def _elapsed(start: datetime, end: datetime) -> timedelta:
    """Real time between two aware moments (subtracting two datetimes that share a `ZoneInfo` would
    count wall-clock time and be an hour off across a daylight-saving change)."""
    return end.astimezone(UTC) - start.astimezone(UTC)


def wire(moment: datetime) -> str:
    """The `send_at` value for the API: ISO 8601 with its offset, to the second."""
    return moment.isoformat(timespec="seconds")
