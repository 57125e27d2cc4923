"""Calendar periods. Inside, every period is a half-open UTC interval; a budget's window is calendar-aligned in its
own IANA time zone (a local day is 23 or 25 hours across a DST change), so a period's spend is a query, not a
reset job.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from resolvers.platform.errors import InvalidInput
from resolvers.platform.memo import cached

#: The days any date a client sends may name: far enough from Python's date.max (9999-12-31) that the day after a
#: range, a month's end or a zone's offset never overflows (OverflowError was a 500).
FIRST_DAY = date(1970, 1, 1)
LAST_DAY = date(9000, 12, 31)


def supported_day(field: str, day: date) -> date:
    """`day`, or BAD_USER_INPUT naming `field` when it lies outside FIRST_DAY .. LAST_DAY."""
    if not FIRST_DAY <= day <= LAST_DAY:
        raise InvalidInput(field, f"must be a date from {FIRST_DAY} to {LAST_DAY} (got {day})")
    return day


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Period:
    """A half-open UTC interval [start, end)."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("periods are aware UTC datetimes")
        if self.end <= self.start:
            raise ValueError("a period ends after it starts")

    def contains(self, moment: datetime) -> bool:
        return self.start <= moment < self.end

    @cached
    def key(self) -> str:
        """A short stable name of the period (its UTC start), for ledgers and alert dedupe keys (computed once:
        the pre-request decision asks for it several times per budget)."""
        return f"{self.start.astimezone(UTC):%Y-%m-%dT%H:%M}Z"


def month_of(moment: datetime) -> Period:
    """The calendar month (UTC) that holds `moment`."""
    return Window().period_at(moment)


# ---------------------------------------------------------------------------------------------- windows


class Cadence(StrEnum):
    """How often a budget's window resets."""

    DAILY = "daily"
    WEEKLY = "weekly"
    MONTHLY = "monthly"
    QUARTERLY = "quarterly"
    YEARLY = "yearly"


class Weekday(StrEnum):
    MONDAY = "monday"
    TUESDAY = "tuesday"
    WEDNESDAY = "wednesday"
    THURSDAY = "thursday"
    FRIDAY = "friday"
    SATURDAY = "saturday"
    SUNDAY = "sunday"

    @property
    def number(self) -> int:
        """Python's weekday(): Monday 0 … Sunday 6."""
        return list(Weekday).index(self)


#: The latest day a month may start on: every month has it.
MAX_MONTH_START_DAY = 28


@lru_cache(maxsize=1)
def zone_names() -> frozenset[str]:
    """The IANA time zone names this server takes: `zoneinfo.available_timezones()`, exactly as spelled there.
    ZoneInfo alone would also open `posixrules`, `posix/...` and `right/...` copies; the OpenAPI document lists
    these names as the choices of every time zone field, so the two agree. Read once: listing them walks the
    zone files (about 9 ms), and a name that is refused is not cached by `zone`."""
    from zoneinfo import available_timezones

    return frozenset(available_timezones())


@lru_cache(maxsize=1024)
def zone(name: str) -> ZoneInfo:
    """An IANA time zone by name (cached: looked up on hot paths)."""
    try:
        if name not in zone_names():
            raise ZoneInfoNotFoundError(name)
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise InvalidInput("time_zone", f"{name!r} is not an IANA time zone name (e.g. Europe/Berlin)") from None


def time_zone(field: str, name: str | None, default: str) -> str:
    """A time zone name as given, checked; blank is `default`."""
    cleaned = (name or "").strip() or default
    if len(cleaned) > 64 or any(ord(c) < 32 for c in cleaned):
        raise InvalidInput(field, "is not an IANA time zone name (e.g. Europe/Berlin)")
    try:
        zone(cleaned)
    except InvalidInput:
        raise InvalidInput(field, f"{cleaned!r} is not an IANA time zone name (e.g. Europe/Berlin)") from None
    return cleaned


def local_midnight(day: date, tz: ZoneInfo) -> datetime:
    """The first instant of a local calendar day, in UTC. Where midnight itself falls in a DST gap (clocks jump
    from 23:59 to 01:00), zoneinfo's fold=0 reading maps it to the instant the day really begins."""
    return datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)


def local_days(start: date, end: date, tz_name: str) -> Period:
    """Local calendar days [start, end) in a zone, as one UTC period."""
    tz = zone(tz_name)
    return Period(local_midnight(start, tz), local_midnight(end, tz))


def _add_months(year: int, month: int, months: int) -> tuple[int, int]:
    index = year * 12 + (month - 1) + months
    return index // 12, index % 12 + 1


@dataclass(frozen=True)
class Window:
    """A budget's period: calendar-aligned in `time_zone`, with its anchors — the weekday a week starts, the day a
    month starts (a billing day, 1 to 28) and the month a (fiscal) year starts. Quarters start every third month
    from `year_start_month`, on `month_start_day`."""

    cadence: Cadence = Cadence.MONTHLY
    time_zone: str = "UTC"
    week_starts_on: Weekday = Weekday.MONDAY
    month_start_day: int = 1
    year_start_month: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.month_start_day <= MAX_MONTH_START_DAY:
            raise InvalidInput("month_start_day", f"must be a day from 1 to {MAX_MONTH_START_DAY}")
        if not 1 <= self.year_start_month <= 12:
            raise InvalidInput("year_start_month", "must be a month from 1 (January) to 12")
        zone(self.time_zone)

    def period_at(self, moment: datetime) -> Period:
        """The window that holds `moment`, as a UTC period. The last one found is kept on the window: the
        pre-request decision asks each budget's window for "now" several times per request, and it is almost
        always the same period (the same object, so its key is computed once too)."""
        last: Period | None = self.__dict__.get("_last")
        if last is not None and last.start <= moment < last.end:
            return last
        tz = zone(self.time_zone)
        local = moment.astimezone(tz)
        start, end = self._local_bounds(local.date())
        found = Period(local_midnight(start, tz), local_midnight(end, tz))
        object.__setattr__(self, "_last", found)  # a memo, not a field: equality and hashing ignore it
        return found

    def next_after(self, period: Period) -> Period:
        return self.period_at(period.end)

    def _local_bounds(self, today: date) -> tuple[date, date]:
        if self.cadence is Cadence.DAILY:
            return today, today + timedelta(days=1)
        if self.cadence is Cadence.WEEKLY:
            start = today - timedelta(days=(today.weekday() - self.week_starts_on.number) % 7)
            return start, start + timedelta(days=7)
        step = {Cadence.MONTHLY: 1, Cadence.QUARTERLY: 3, Cadence.YEARLY: 12}[self.cadence]
        # Months since the anchor month, counting a month from its start day.
        year, month = today.year, today.month
        if today.day < self.month_start_day:
            year, month = _add_months(year, month, -1)
        offset = (month - self.year_start_month) % step
        year, month = _add_months(year, month, -offset)
        start = date(year, month, self.month_start_day)
        end_year, end_month = _add_months(year, month, step)
        return start, date(end_year, end_month, self.month_start_day)

    def period_name(self, period: Period) -> str:
        """`period` named by this window's cadence, from its first local day in this window's zone: the day
        `2026-12-06`, the ISO week `2026-W49` (a week from Sunday: the ISO week of that Sunday), the month `2026-12`
        (a Tokyo December starts at 15:00 UTC on November 30), the calendar quarter `2026-Q4` (quarters of a year
        from another month too: November to January is 2026-Q4) and the year `2026` (a year from April 2026:
        2026). Consecutive windows never share a name. For people (alert details), not a key: see `Period.key`."""
        first = period.start.astimezone(zone(self.time_zone)).date()
        if self.cadence is Cadence.DAILY:
            return first.isoformat()
        if self.cadence is Cadence.WEEKLY:
            iso = first.isocalendar()
            return f"{iso.year}-W{iso.week:02d}"
        if self.cadence is Cadence.QUARTERLY:
            return f"{first.year}-Q{(first.month - 1) // 3 + 1}"
        if self.cadence is Cadence.YEARLY:
            return f"{first.year}"
        return f"{first:%Y-%m}"

    @property
    def is_default_month(self) -> bool:
        """The guide's calendar month in UTC."""
        return self == Window()

    def describe(self) -> str:
        """For example 'monthly', 'daily (America/Los_Angeles)', 'yearly from April'."""
        text = self.cadence.value
        if self.cadence is Cadence.WEEKLY and self.week_starts_on is not Weekday.MONDAY:
            text += f" from {self.week_starts_on.value.capitalize()}"
        if self.cadence in (Cadence.QUARTERLY, Cadence.YEARLY) and self.year_start_month != 1:
            text += f" from {date(2000, self.year_start_month, 1):%B}"
        if self.cadence in (Cadence.MONTHLY, Cadence.QUARTERLY, Cadence.YEARLY) and self.month_start_day != 1:
            text += f" from day {self.month_start_day}"
        if self.time_zone != "UTC":
            text += f" ({self.time_zone})"
        return text


# LiteLLM's budget_duration strings, as the same calendar windows ("30d" and "1mo" are LiteLLM's month).
_DURATIONS = {
    "1d": Cadence.DAILY,
    "24h": Cadence.DAILY,
    "7d": Cadence.WEEKLY,
    "1w": Cadence.WEEKLY,
    "30d": Cadence.MONTHLY,
    "1mo": Cadence.MONTHLY,
    "3mo": Cadence.QUARTERLY,
    "90d": Cadence.QUARTERLY,
    "1y": Cadence.YEARLY,
    "12mo": Cadence.YEARLY,
    "365d": Cadence.YEARLY,
}
#: Every name a period may be given by: the cadences and LiteLLM's budget_duration strings.
PERIOD_NAMES: tuple[str, ...] = (*Cadence, *_DURATIONS)


def cadence_of(field: str, value: str) -> Cadence:
    """A period given as the enum's name (`DAILY`, `monthly`) or as LiteLLM's `budget_duration` (`1d`, `7d`,
    `30d`, `1mo`, `3mo`, `1y`)."""
    cleaned = value.strip().lower()
    if cleaned in _DURATIONS:
        return _DURATIONS[cleaned]
    try:
        return Cadence(cleaned)
    except ValueError:
        allowed = ", ".join(c.value for c in Cadence)
        durations = ", ".join(_DURATIONS)
        raise InvalidInput(field, f"must be one of {allowed} (or LiteLLM's {durations}); got {value!r}") from None


def weekday_of(field: str, value: str) -> Weekday:
    try:
        return Weekday(value.strip().lower())
    except ValueError:
        raise InvalidInput(field, f"must be a weekday name (monday … sunday); got {value!r}") from None
