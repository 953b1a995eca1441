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
    out: Path, rows: int = 2000, fmt: str = "parquet", with_outcomes: bool = False
) -> list[Path]:
    """Write `trips.{fmt}` into `out` and, with outcomes, a week of daily partitions of
    trips to predict (`batch/dt=.../trips.{fmt}`, about rows/8 a day) and of their
    outcomes (`outcomes/dt=.../outcomes.{fmt}`); refused in one line when any of them is
    there already. Returns the files written."""
    if fmt not in FORMATS:
        raise UserError(f"unknown format {fmt!r}: use parquet or csv")
    if not 0 < rows <= MAX_ROWS:
        raise UserError(f"--rows must be from 1 to {MAX_ROWS:,}, got {rows}")
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file: name a folder (created if missing)")
    targets = [out / f"trips.{fmt}", *([out / "batch", out / "outcomes"] if with_outcomes else [])]
    existing = [str(p) for p in targets if p.exists()]
    if existing:
        raise UserError(f"{existing[0]} exists: sample data never overwrites a file")
    import pandas as pd

    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    monday = today - timedelta(days=today.weekday())
    weeks_ago = monday - timedelta(days=21)  # whole weeks, all of them observed by now
    frames = {out / f"trips.{fmt}": exported(rows, 0, weeks_ago)}
    if with_outcomes:  # the trips of the week after: predicted, then observed
        batch = exported(max(rows // 8, 1) * 7, 1, weeks_ago + timedelta(days=7))
        observed = batch["picked_up_at"] + pd.to_timedelta(batch[TARGET], unit="m")
        outcomes = batch[["trip_id", TARGET]].assign(observed_at=observed)
        for day, rows_of_day in batch.groupby(batch["picked_up_at"].dt.floor("D")):
            folder = PARTITION.format(day=day)
            frames[out / "batch" / folder / f"trips.{fmt}"] = rows_of_day.drop(columns=[TARGET])
            frames[out / "outcomes" / folder / f"outcomes.{fmt}"] = outcomes.loc[rows_of_day.index]
    for path, frame in frames.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.partial")  # never a half-written file
        if fmt == "csv":
            frame.to_csv(partial, index=False)
        else:
            frame.to_parquet(partial, index=False)
        partial.rename(path)
    return list(frames)
