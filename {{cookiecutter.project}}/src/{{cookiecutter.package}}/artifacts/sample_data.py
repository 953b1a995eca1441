"""`inv sample-data`: trips in the shape the data sources read, to start from.

The files look like a product's export, not like the generator's frame: riders by a string
id (`user_id`, no `user_cluster`), a pickup time, and extra columns the project ignores.
Training trips from a week three weeks ago; with outcomes, the trips of the week after it
in daily partitions, as a daily export lands them (`batch/dt=YYYY-MM-DD/`, no duration),
and their actual durations as the data source reads outcomes (`outcomes/dt=YYYY-MM-DD/`:
`trip_id`, `eta_minutes`, `observed_at`), all observed by now.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from {{ cookiecutter.package }}.errors import UserError
from {{ cookiecutter.package }}.ml import TARGET
from {{ cookiecutter.package }}.ml.data import make_trips

if TYPE_CHECKING:
    import pandas as pd

FORMATS = ("parquet", "csv")
MAX_ROWS = 10_000_000
PARTITION = "dt={day:%Y-%m-%d}"  # a daily partition's folder, as Hive and BigQuery name them


def exported(n_trips: int, seed: int, week: datetime) -> pd.DataFrame:
    """Synthetic trips as a team exports them: string rider ids, pickup times in the week
    starting on Monday `week` (agreeing with `weekday` and `pickup_hour`), extras."""
    import numpy as np
    import pandas as pd

    trips = make_trips(n_trips, seed).drop(columns=["user_cluster"])
    trips["trip_id"] = [f"trip-{seed}-{i:07d}" for i in range(n_trips)]
    trips["user_id"] = "rider-" + trips["user_id"].astype(str)
    seconds = np.random.default_rng(seed).integers(0, 3600, n_trips)
    offset = trips["weekday"] * 86_400 + trips["pickup_hour"] * 3600 + seconds
    trips["picked_up_at"] = pd.Timestamp(week) + pd.to_timedelta(offset, unit="s")
    trips["vehicle"] = "sedan"  # a column the project does not read
    return trips


def write_sample(
    out: Path,
    rows: int = 2000,
    fmt: str = "parquet",
    with_outcomes: bool = False,
    days: int = 7,
    start: datetime | None = None,
    rows_per_day: int | None = None,
) -> list[Path]:
    """Write `trips.{fmt}` into `out` and, with outcomes, `days` daily partitions of trips
    to predict from `start` (`batch/dt=.../trips.{fmt}`, about `rows_per_day` a day, rows/8
    unless given; by default the week two weeks ago) and of their outcomes
    (`outcomes/dt=.../outcomes.{fmt}`); refused in one line when any of them is there
    already, or when a day has not passed yet. Returns the files written."""
    if fmt not in FORMATS:
        raise UserError(f"unknown format {fmt!r}: use parquet or csv")
    if not 0 < rows <= MAX_ROWS:
        raise UserError(f"--rows must be from 1 to {MAX_ROWS:,}, got {rows}")
    per_day = max(rows // 8, 1) if rows_per_day is None else rows_per_day
    if not 0 < days <= 3660 or not 0 < per_day * days <= MAX_ROWS:
        raise UserError(
            f"--days {days} of --rows-per-day {per_day}: from 1 to 3660 days, at most "
            f"{MAX_ROWS:,} trips in all"
        )
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    monday = today - timedelta(days=today.weekday())
    weeks_ago = monday - timedelta(days=21)  # whole weeks, all of them observed by now
    first = (start or weeks_ago + timedelta(days=7)).replace(hour=0, minute=0, second=0)
    first = first if first.tzinfo else first.replace(tzinfo=UTC)
    if first + timedelta(days=days) > today:
        raise UserError(
            f"--start {first:%Y-%m-%d} and --days {days} end after yesterday: outcomes are "
            "observed after the trips, so sample days must have passed"
        )
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file: name a folder (created if missing)")
    targets = [out / f"trips.{fmt}", *([out / "batch", out / "outcomes"] if with_outcomes else [])]
    existing = [str(p) for p in targets if p.exists()]
    if existing:
        raise UserError(f"{existing[0]} exists: sample data never overwrites a file")
    frames = {out / f"trips.{fmt}": exported(rows, 0, weeks_ago)}
    if with_outcomes:  # the trips of the days after: predicted, then observed
        frames |= _batches(out, fmt, first, days, per_day)
    for path, frame in frames.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.partial")  # never a half-written file
        if fmt == "csv":
            frame.to_csv(partial, index=False)
        else:
            frame.to_parquet(partial, index=False)
        partial.rename(path)
    return list(frames)


def _batches(
    out: Path, fmt: str, first: datetime, days: int, per_day: int
) -> dict[Path, pd.DataFrame]:
    """Each day's partition of trips and of their outcomes: a week of trips drawn for every
    week the days touch (seed 1 for the first: the same trips for the same week), each
    day's rows kept."""
    import pandas as pd

    last = first + timedelta(days=days)
    frames: dict[Path, pd.DataFrame] = {}
    week, seed = first - timedelta(days=first.weekday()), 1
    while week < last:
        batch = exported(per_day * 7, seed, week)
        batch = batch[(batch["picked_up_at"] >= first) & (batch["picked_up_at"] < last)]
        observed = batch["picked_up_at"] + pd.to_timedelta(batch[TARGET], unit="m")
        outcomes = batch[["trip_id", TARGET]].assign(observed_at=observed)
        for day, rows_of_day in batch.groupby(batch["picked_up_at"].dt.floor("D")):
            folder = PARTITION.format(day=day)
            frames[out / "batch" / folder / f"trips.{fmt}"] = rows_of_day.drop(columns=[TARGET])
            frames[out / "outcomes" / folder / f"outcomes.{fmt}"] = outcomes.loc[rows_of_day.index]
        week, seed = week + timedelta(days=7), seed + 1
    return frames
