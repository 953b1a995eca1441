"""A batch-inference run's data interval: the trips it predicts are those of [start, end).

Every inference run has one, whoever starts it:

- Airflow: the DAG run's data interval (`data_interval_start`, `data_interval_end`);
- Kubeflow Pipelines (and Vertex AI): a recurring run's schedule time is the end, and the
  schedule's period before it the start (kfp's `PIPELINE_JOB_SCHEDULE_TIME_UTC_PLACEHOLDER`);
- locally: `inv run-scheduled` predicts the period since the last run, `--start/--end`
  name one; `inv run-inference` the schedule's period up to now unless told.

The data source turns it into what to read: a path template (`batch_path:
exports/dt={start:%Y-%m-%d}/*.parquet`), a filter on a time column, or BigQuery's `@start`
and `@end` query parameters. An interval may span several periods of a template (a 5-day
backfill over daily partitions): `render_periods` names every period's partition, so one
run reads them all. (Airflow's backfill makes one DAG run per period instead; a run here
is what the user asked for, one interval, one record listing every file it read.)
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from {{ cookiecutter.package }}.errors import PATH_CHARS, UserError, shown

# What a template may name: `{start:%Y-%m-%d}`, `{end:%H}`, `{start}`.
FIELDS = ("start", "end")
# kfp's local runner leaves a placeholder it cannot resolve as written.
_PLACEHOLDER = re.compile(r"^\{\{.*\}\}$")
# The period a strftime directive changes with, in seconds. Weeks, months and years are
# walked a day at a time (their partitions are the distinct names the days give).
_DIRECTIVE_PERIOD = {
    **dict.fromkeys("SsfLT", 1),
    "M": 60,
    **dict.fromkeys("HIkl", 3600),
    **dict.fromkeys("dejaAwuUWVmbBhYyGCDFxc", 86_400),
}
# More partitions than this in one run is a mistake (seconds over days), not a backfill.
MAX_PERIODS = 10_000


class IntervalError(UserError, ValueError):
    """An interval or a path template that cannot be used."""


def moment(text: str, what: str = "time") -> datetime:
    """An ISO date or time (a date is its midnight; a time without a zone is UTC)."""
    try:
        found = datetime.fromisoformat(str(text).strip().replace("Z", "+00:00"))
    except ValueError:
        raise IntervalError(
            f"invalid {what} {shown(text)}: use an ISO date or time, e.g. 2026-12-04 or "
            "2026-12-04T06:00"
        ) from None
    return found if found.tzinfo else found.replace(tzinfo=UTC)


def _given(text: Any) -> bool:
    """Whether a runtime value names a time: not empty, not `None` (Airflow renders a
    manual run's missing interval so), not a placeholder the runner left unresolved."""
    value = str(text or "").strip()
    return bool(value) and value != "None" and not _PLACEHOLDER.match(value)


@dataclass(frozen=True)
class Interval:
    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.start >= self.end:
            raise IntervalError(f"the interval {self} is empty: its start must be before its end")

    def __str__(self) -> str:
        return f"[{_iso(self.start)}, {_iso(self.end)})"

    def to_json(self) -> dict[str, str]:
        return {"start": self.start.isoformat(), "end": self.end.isoformat()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Interval:
        return cls(moment(data["start"]), moment(data["end"]))

    @classmethod
    def resolve(
        cls,
        start: str = "",
        end: str = "",
        schedule_time: str = "",
        period_seconds: int = 0,
        now: datetime | None = None,
    ) -> Interval:
        """A run's interval from what it was given: `end` (else the schedule time, else now),
        and `start` (else one period before the end). A start equal to the end is a point
        in time, not an interval: Airflow 3's trigger timetables (its default for cron and
        timedelta schedules) give each run one; the period before it is the run's."""
        period = timedelta(seconds=int(period_seconds) or 86_400)
        if _given(end):
            stop = moment(end, "end")
        elif _given(schedule_time):
            stop = moment(schedule_time, "schedule time")
        else:
            stop = now or datetime.now(UTC)
        begin = moment(start, "start") if _given(start) else stop - period
        return cls(stop - period if begin == stop else begin, stop)

    def contains(self, stamps: Any) -> Any:
        """Which of `stamps` (a pandas Series of times) fall in the interval."""
        import pandas as pd

        stamps = pd.to_datetime(stamps, utc=True)
        return (stamps >= pd.Timestamp(self.start)) & (stamps < pd.Timestamp(self.end))


def _iso(value: datetime) -> str:
    text = value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    return text.removesuffix("T00:00:00Z") if text.endswith("T00:00:00Z") else text


def check_template(template: str, what: str) -> None:
    """Refuse a path template naming anything but `start` and `end` (with a strftime format)."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as error:
        raise IntervalError(
            f"{what} {shown(template, PATH_CHARS)} is not a valid template: {error}"
        ) from None
    for _, field, _, _ in parsed:
        if field is not None and field not in FIELDS:
            raise IntervalError(
                f"{what} {shown(template, PATH_CHARS)} names {'{' + field + '}'}: a template "
                "may name only {start} and {end}, e.g. dt={start:%Y-%m-%d}"
            )


def template_period(template: str) -> int | None:
    """The period of a template's partitions in seconds (its finest strftime directive);
    None for a template without one (a fixed path, or `{start}` whole)."""
    periods = [
        _DIRECTIVE_PERIOD[directive]
        for _, field, spec, _ in string.Formatter().parse(template)
        if field in FIELDS and spec
        for directive in re.findall(r"%-?([A-Za-z])", spec)
        if directive in _DIRECTIVE_PERIOD
    ]
    return min(periods, default=None)


def render_periods(template: str, interval: Interval | None, what: str) -> list[str]:
    """Every partition of `template` the interval touches, in time order, each rendered with
    its own period (clipped to the interval) as `start` and `end`: `dt={start:%Y-%m-%d}`
    over [2026-11-23, 2026-11-28) names five days. One name for an interval within one
    period, and for a template without a period."""
    first = render(template, interval, what)
    period = template_period(template)
    if interval is None or period is None:
        return [first]
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    step = timedelta(seconds=period)
    at = interval.start - (interval.start - epoch) % step  # UTC-aligned period start
    count = (interval.end - at) // step + 1
    if count > MAX_PERIODS:
        raise IntervalError(
            f"the interval {interval} spans {count} periods of {what} "
            f"{shown(template, PATH_CHARS)} (at most {MAX_PERIODS}): split it into shorter runs"
        )
    names: list[str] = []
    while at < interval.end:
        period_of = Interval(max(at, interval.start), min(at + step, interval.end))
        name = template.format(start=period_of.start, end=period_of.end)
        if name not in names:
            names.append(name)
        at += step
    return names


def render(template: str, interval: Interval | None, what: str) -> str:
    """`template` with the interval's start and end in it (`{start:%Y-%m-%d}`); a path
    without fields is itself. A template without an interval is refused."""
    check_template(template, what)
    if not any(field for _, field, _, _ in string.Formatter().parse(template)):
        return template
    if interval is None:
        raise IntervalError(
            f"{what} {shown(template, PATH_CHARS)} is a template: the run has no interval"
        )
    return template.format(start=interval.start, end=interval.end)
