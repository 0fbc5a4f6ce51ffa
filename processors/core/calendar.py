"""Calendar arithmetic of the core, in integers: UTC days and months of epoch milliseconds, ISO times.

A *day* is `ms // DAY_MS` (days since 1970-01-01 UTC); a *month* is `year * 12 + month - 1`.
"""

from __future__ import annotations

from functools import lru_cache

DAY_MS = 86_400_000


def civil(day: int) -> tuple[int, int, int]:
    """(year, month, day) of a day number (H. Hinnant's days-to-civil, proleptic Gregorian)."""
    z = day + 719_468
    era = z // 146_097
    doe = z - era * 146_097
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    month = mp + 3 if mp < 10 else mp - 9
    return yoe + era * 400 + (month <= 2), month, doy - (153 * mp + 2) // 5 + 1


@lru_cache(maxsize=4096)
def month_of_day(day: int) -> int:
    year, month, _ = civil(day)
    return year * 12 + month - 1


def first_day_of_month(month: int) -> int:
    year, m = divmod(month, 12)
    year -= m < 2  # January and February count as months 11 and 12 of the previous March-based year
    era = year // 400
    yoe = year - era * 400
    doy = (153 * (m - 2 if m >= 2 else m + 10) + 2) // 5
    return era * 146_097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719_468


def iso_millis(t: int) -> str:
    """ISO-8601 UTC with milliseconds and Z, e.g. 2024-03-01T00:00:00.000Z."""
    day, ms = divmod(t, DAY_MS)
    # Digits from tables and no format specs: the worker formats one for every order it accepts (its
    # `new_order` notice), and an f-string of `:02d` fields cost about 1.5 us.
    s = ms // 1000
    return f"{_date(day)}T{_TWO[s // 3600]}:{_TWO[s // 60 % 60]}:{_TWO[s % 60]}.{_THREE[ms % 1000]}Z"


_TWO = tuple(f"{i:02d}" for i in range(60))
_THREE = tuple(f"{i:03d}" for i in range(1000))


@lru_cache(maxsize=1024)
def _date(day: int) -> str:
    year, month, dom = civil(day)
    return f"{year:04d}-{month:02d}-{dom:02d}"


def month_label(month: int) -> str:
    return f"{month // 12:04d}-{month % 12 + 1:02d}"
