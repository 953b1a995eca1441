"""`inv sample-data`: trips in the shape the data sources read, to start from.

The files look like a product's export, not like the generator's frame: riders by a string
id (`user_id`, no `user_cluster`), a pickup time, and extra columns the project ignores.
Training trips from a week three weeks ago; with outcomes, the trips of the week after it
to predict (no duration) and their actual durations as the data source reads outcomes
(`trip_id`, `eta_minutes`, `observed_at`), all observed by now.
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
    """Write `trips.{fmt}` (and with outcomes `batch.{fmt}` and `outcomes.{fmt}`) into
    `out`; refused in one line when a file of that name is there already."""
    if fmt not in FORMATS:
        raise UserError(f"unknown format {fmt!r}: use parquet or csv")
    if not 0 < rows <= MAX_ROWS:
        raise UserError(f"--rows must be from 1 to {MAX_ROWS:,}, got {rows}")
    names = ["trips", *(["batch", "outcomes"] if with_outcomes else [])]
    paths = [out / f"{name}.{fmt}" for name in names]
    existing = [str(p) for p in paths if p.exists()]
    if existing:
        raise UserError(f"{existing[0]} exists: sample data never overwrites a file")
    import pandas as pd

    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    monday = today - timedelta(days=today.weekday())
    weeks_ago = monday - timedelta(days=21)  # whole weeks, all of them observed by now
    frames = {"trips": exported(rows, 0, weeks_ago)}
    if with_outcomes:  # the trips of the week after: predicted, then observed
        batch = exported(max(rows // 4, 1), 1, weeks_ago + timedelta(days=7))
        observed = batch["picked_up_at"] + pd.to_timedelta(batch[TARGET], unit="m")
        frames["outcomes"] = batch[["trip_id", TARGET]].assign(observed_at=observed)
        frames["batch"] = batch.drop(columns=[TARGET])
    out.mkdir(parents=True, exist_ok=True)
    for name, path in zip(names, paths, strict=True):
        partial = path.with_name(f".{path.name}.partial")  # never a half-written file
        if fmt == "csv":
            frames[name].to_csv(partial, index=False)
        else:
            frames[name].to_parquet(partial, index=False)
        partial.rename(path)
    return paths
