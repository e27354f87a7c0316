"""Qiniu's notions of time: Beijing calendar days, the 7-day query window, request-id ages."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta, timezone

__all__ = [
    "BEIJING",
    "QUERY_DAYS",
    "format_utc",
    "next_reset",
    "parse_vendor_time",
    "query_window",
    "request_id_time",
    "window_start",
]

# Qiniu's daily quotas reset at "0 点" and its list dates are calendar days; the service is
# run from China, so both are read in China Standard Time (UTC+8, no daylight saving).
BEIJING = timezone(timedelta(hours=8), "UTC+08:00")
# prefetch/list and refresh/list answer for today and the 6 days before it.
QUERY_DAYS = 7

_OBJECT_ID = re.compile(r"[0-9a-f]{24}")
_EARLIEST_ID = datetime(2012, 1, 1, tzinfo=UTC)  # Qiniu's fusion CDN is younger than this


def window_start(now: datetime) -> datetime:
    """The oldest moment the list calls still answer for: 00:00 Beijing, 6 days ago."""
    today = now.astimezone(BEIJING).date()
    return datetime.combine(today - timedelta(days=QUERY_DAYS - 1), time(), tzinfo=BEIJING)


def query_window(now: datetime, since: datetime | None = None) -> tuple[str, str]:
    """``startTime`` and ``endTime`` (``YYYY-MM-DD``, Beijing) for a list call.

    Both are always sent: without them Qiniu searches only the last 3 days.
    """
    today = now.astimezone(BEIJING).date()
    first = today - timedelta(days=QUERY_DAYS - 1)
    if since is not None:
        # a day early: a record made just before midnight may be dated the day before
        first = max(first, since.astimezone(BEIJING).date() - timedelta(days=1))
    first = min(first, today)
    return _day(first), _day(today)


def next_reset(moment: datetime) -> datetime:
    """The daily quota's next reset after ``moment``: the following 00:00 Beijing."""
    day = moment.astimezone(BEIJING).date() + timedelta(days=1)
    return datetime.combine(day, time(), tzinfo=BEIJING)


def request_id_time(request_id: str) -> datetime | None:
    """When Qiniu made a request id, or None when the id does not say.

    Qiniu's request ids are 24 hex digits in the shape of MongoDB ObjectIds, whose first
    four bytes are the creation time in Unix seconds (e.g. the documented
    ``577471ace3ab3a030c058972`` is 2016-06-30). Anything implausible gives None.
    """
    if not _OBJECT_ID.fullmatch(request_id):
        return None
    made = datetime.fromtimestamp(int(request_id[:8], 16), UTC)
    if made < _EARLIEST_ID or made > datetime.now(UTC) + timedelta(days=1):
        return None
    return made


def parse_vendor_time(text: object) -> datetime | None:
    """A list item's ``createAt``-style time (``2015-11-01 16:05:05``, Beijing unless it
    names its offset), or None."""
    if not isinstance(text, str) or not text:
        return None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        parsed = None
    if parsed is not None:  # an offset it names (Z, +08:00) is kept
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=BEIJING)
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S"):
        try:
            return datetime.strptime(text[:19], fmt).replace(tzinfo=BEIJING)
        except ValueError:
            continue
    return None


def format_utc(moment: datetime) -> str:
    """ISO 8601 in UTC with a Z, as prewarm's JSON writes times."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _day(day: date) -> str:
    return day.strftime("%Y-%m-%d")
