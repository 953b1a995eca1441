"""Slow tier: the generated README's commands, run as written in a fresh project.

The fenced shell blocks of "Set up", "Train", "Experiments", "Release" and "Traffic" run in
order (then "Online inference", "Rehearse git-flow locally" and "Use your own data"), as one
newcomer would type them (the environment activated as Set up says, and IMAGE_BUILDER=none
as it says for a machine with no registry at hand). Nothing but those blocks touches the
project, which is generated with a first version other than the default: the examples must
name the versions the user chose.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from tests.conftest import render
from tests.project import TOOLS, Project
from tests.test_release_e2e import snapshot

pytestmark = pytest.mark.slow

SECTIONS = ("Set up", "Train", "Experiments", "Release", "Traffic")


# The kind of each MLflow run in the project's store, and each trial's parent run.
TRACKED = """
import json
from pathlib import Path
from taxi_eta.artifacts.tracking import PARENT_TAG, Tracker
tracker = Tracker(f"sqlite:///{Path.cwd() / 'mlflow.db'}", "taxi-eta")
print(json.dumps([(r.kind, r.tags.get(PARENT_TAG, r.run_id)) for r in tracker.runs()]))
"""


def shell_blocks(readme: str, heading: str) -> list[str]:
    # The section whose heading starts with `heading` ("Traffic" is "Traffic: A/B, ...").
    section = readme.split(f"\n## {heading}", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.*?)```", section, flags=re.S)


def test_the_readme_runs_as_written(tmp_path: Path) -> None:
    project = Project(render(tmp_path, version="1.4.2"))
    readme = (project.path / "README.md").read_text()
    # `source .venv/bin/activate` of Set up, for every later block; uv from this machine.
    path = f"{project.path / '.venv/bin'}:{TOOLS}:{os.environ['PATH']}"
    env = {"PATH": path, "IMAGE_BUILDER": "none"}
    for heading in SECTIONS:
        blocks = shell_blocks(readme, heading)
        assert blocks, f"no shell block under {heading!r}"
        script = "set -euo pipefail\n" + "\n".join(blocks)
        project.run("bash", "-c", script, env=env, timeout=1800)

    assert project.git("status", "--porcelain") == ""  # every documented command keeps it
    released = sorted(p.name for p in (project.artifacts / "releases").iterdir())
    assert released == ["1.4.2.json", "1.5.0.json"]
    assert project.git("tag", "--list").split() == ["v1.4.2", "v1.5.0"]
    assert (project.artifacts / "predictions/1.4.2").is_dir()
    # Traffic ended with its last command, `inv rollback --to 1.4.2`.
    assert "rollback to 1.4.2" in project.inv("traffic").stdout
    # On the way, `inv ab` judged the canary 1.5.0 (the same code and data as 1.4.2: the same
    # predictions, trip by trip) equivalent on the outcomes of two scheduled ticks, and
    # `--promote` moved it one step with that evidence.
    history = project.inv("traffic", "--history").stdout
    assert "promote 1.5.0 to 4-7 (50%): equivalent" in history
    assert re.search(r"evidence: 1\.5\.0 vs 1\.4\.2: n=1000, MAE difference \+0\.000 min "
                     r"\[\+0\.000, \+0\.000\], equivalent", history), history
    dom = dump_dom(project.path / "outputs/ab.html", tmp_path)
    assert 'data-candidate="1.5.0" data-verdict="equivalent"' in dom
    assert dom.count("<tr>") == 10  # the header, eight clusters and all
    (axes,) = chart_ticks(dom)["plot-ab-1"]  # an interval per cluster and overall
    assert axes[0] >= 2 and axes[1] == 9 and dom.count('id="interval-plot-ab-1-') == 9
    versions = project.inv("versions").stdout.splitlines()
    schedules = {line.split()[0]: next(w for w in line.split() if w.startswith("training:"))
                 for line in versions[1:]}
    assert schedules == {"1.4.2": "training:on,inference:on",
                         "1.5.0": "training:off,inference:off"}
    # Every metric, with its change from the previous version on the second row.
    assert versions[0].split()[4:9] == ["mae", "bias", "n_test", "r2", "rmse"]
    assert re.search(r"\(\+0\)", versions[2]) and versions[2].count("(+") == 5

    # "Online inference": `inv up` serves the live version (1.4.2; 1.5.0 was retired by the
    # rollback) and the router, the request goes through, `inv down` leaves nothing running.
    (block,) = shell_blocks(readme, "Online inference")
    served = project.run("bash", "-c", "set -euo pipefail\n" + block, env=env, timeout=600)
    assert '"version":"1.4.2"' in served.stdout.replace(" ", ""), served.stdout
    assert served.stdout.count(" answers") == 2 and "1.5.0" not in served.stdout
    assert "stopped router" in served.stdout and not (project.path / ".serving/up.json").exists()

    # "Send lineage to your catalog": an inference run of 1.4.2 as OpenLineage events, the
    # workflow run and each of its steps started and completed, the steps under the run.
    block = shell_blocks(readme, "Send lineage to your catalog")[0]
    project.run("bash", "-c", "set -euo pipefail\n" + block, env=env, timeout=600)
    lines = (project.path / "lineage.jsonl").read_text().splitlines()
    events = [json.loads(line) for line in lines]
    dag = "taxi_eta_inference__v1_4_2"
    jobs = Counter((event["job"]["name"], event["eventType"]) for event in events)
    assert jobs == {(job, state): 1 for job in (dag, f"{dag}.make_batch_features",
                                                  f"{dag}.predict_batch")
                    for state in ("START", "COMPLETE")}, jobs
    (workflow_run,) = {e["run"]["runId"] for e in events if e["job"]["name"] == dag}
    assert {e["run"]["facets"]["parent"]["run"]["runId"]
            for e in events if e["job"]["name"] != dag} == {workflow_run}

    # `inv experiments`: the runs of Train and Experiments, in two rankings: the run on
    # 20000 trips was scored on another test set than the others.
    listed = project.inv("experiments").stdout
    assert re.match(r"\d+ experiments on 2 different test sets", listed), listed
    big, alone = (block.splitlines() for block in listed.split("\n\n")[1:])
    assert big[0] == "test set: 800 trips of data " + big[0].split()[6] + " (split 0.2, seed 42)"
    assert alone[0].startswith("test set: 4000 trips") and len(alone) == 3
    maes = [float(line.split()[1]) for line in big[2:]]
    assert len(maes) == 7 - 1 + 6 + 1 + 3 + 1 and maes == sorted(maes)
    # Experiments' MLflow runs, in the project's store (the server served the same file):
    # two trainings, and each search as a parent run with a child run per trial.
    runs = json.loads(project.run(str(project.path / ".venv/bin/python"), "-c", TRACKED).stdout)
    assert Counter(kind for kind, _ in runs) == {"experiment": 2, "sweep": 1, "trial": 3}
    (sweep,) = [run_id for kind, run_id in runs if kind == "sweep"]
    assert {parent for kind, parent in runs if kind == "trial"} == {sweep}
    assert not (project.path / "mlflow-server.pid").exists()  # --stop ended the server

    # `inv compare --html outputs/compare.html` of Release, opened in a real browser.
    assert_report_renders(project.path / "outputs/compare.html", tmp_path)

    # "Rehearse git-flow locally", in the same project: dev and prod roots on disk.
    (block,) = shell_blocks(readme, "Rehearse git-flow locally")
    result = project.run("bash", "-c", "set -euo pipefail\n" + block, env=env, timeout=1800)
    assert "code of 1.6.0 promoted from" in result.stdout
    assert "version 1.6.0 is already released on local: nothing to do" in result.stdout
    refusals = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(refusals) == 2, result.stderr
    for line in refusals:
        assert "version 1.6.0 is already released" in line and "conf/config.yaml" in line
        assert line.endswith("bump the version (`inv bump`)")
    assert "CD refused the hotfix" in result.stdout and "CI refused the hotfix" in result.stdout
    dev, prod = (project.path / "rehearsal/dev", project.path / "rehearsal/prod")
    assert (dev / "releases/1.6.0.json").is_file() and (prod / "releases/1.6.0.json").is_file()
    assert project.git("status", "--porcelain") == ""
    assert project.git("branch", "--show-current") == "main"

    # "Use your own data", with trips a team exported, at another path than the project.
    exports = tmp_path / "exports"
    exports.mkdir()
    write_trips = ("import sys; from taxi_eta.ml.data import make_trips; "
                   "make_trips(int(sys.argv[2]), int(sys.argv[3])).drop(columns=['user_cluster'])"
                   ".to_parquet(sys.argv[1], index=False)")
    python = str(project.path / ".venv/bin/python")
    project.run(python, "-c", write_trips, str(exports / "trips-1.parquet"), "3000", "7")
    project.run(python, "-c", write_trips, str(exports / "trips-2.parquet"), "1000", "8")
    trips = str(exports / "trips-*.parquet")
    block, walk = shell_blocks(readme, "Use your own data")
    result = project.run("bash", "-c", "set -euo pipefail\n" + block,
                         env={**env, "TRIPS": trips}, timeout=1800)
    assert "released 1.7.0 to local" in result.stdout
    data = json.loads((project.artifacts / "models/1.7.0/metadata.json").read_text())["data"]
    assert data["source"] == "files" and data["location"] == trips and data["rows"] == 4000
    files = {Path(f["path"]).name: f["sha256"] for f in data["files"]}
    assert files == {name: hashlib.sha256((exports / name).read_bytes()).hexdigest()
                     for name in ("trips-1.parquet", "trips-2.parquet")}
    where = next(line for line in result.stdout.splitlines()
                 if line.startswith("1.7.0 ") and "sha256:" in line)  # inv versions --where
    assert all(f"{exports / name} sha256:{digest[:16]}" in where for name, digest in files.items())
    release_record = json.loads((project.artifacts / "releases/1.7.0.json").read_text())
    assert release_record["model"]["data"]["files"] == data["files"]

    # Features pinned to 1.7.0 are reused only from the files they were built from.
    project.inv("bump")
    first_file = exports / "trips-1.parquet"
    only_first = ["-o", "data_source=files", "-o", f"data_source.path={first_file}"]
    pinned = ["-o", "features.version=1.7.0"]
    before, tags = snapshot(project.artifacts), project.git("tag", "--list")
    refused = project.inv("release", *pinned, *only_first, check=False, env=env)
    assert refused.returncode == 1 and refused.stderr.strip() == (
        f"error: features 1.7.0 were built from files {trips}; this config reads files "
        f"{first_file}: bump `features.version` or restore the source")
    assert snapshot(project.artifacts) == before and project.git("tag", "--list") == tags
    # Unpinned (the features follow the release version), the release builds new features.
    project.inv("release", *only_first, env=env)
    lineage = json.loads((project.artifacts / "lineage/1.7.1.json").read_text())
    assert lineage["location"] == str(first_file) and lineage["rows"] == 3000

    # "Each run predicts its own period": a week of daily partitions, a control (1.8.0) and
    # a canary (1.9.0) released on them, three daily ticks, the verdict, a promotion.
    result = project.run("bash", "-c", "set -euo pipefail\n" + walk, env=env, timeout=1800)
    batch = project.path / "data/exports/batch"
    days = sorted(p.name for p in batch.iterdir())
    for version in ("1.8.0", "1.9.0"):
        records = sorted((project.artifacts / "runs" / version).glob("*.json"))
        assert len(records) == 3, version
        for record, day, next_day in zip(records, days, days[1:], strict=False):
            run = json.loads(record.read_text())
            assert run["interval"]["start"].startswith(day.removeprefix("dt="))
            assert run["interval"]["end"].startswith(next_day.removeprefix("dt="))
            (read,) = run["read"]["files"]
            partition = batch / day / "trips.parquet"
            assert read == {"path": str(partition), "rows": run["predicted"],
                            "sha256": hashlib.sha256(partition.read_bytes()).hexdigest()}
            (location,) = run["predictions"]
            predicted = pd.read_parquet(location)
            assert sorted(predicted.trip_id) == sorted(pd.read_parquet(partition).trip_id)
    # Drift on the walk's trips: the three days predicted are Monday to Wednesday, against a
    # training week with its weekend, so `is_weekend` moved, truly, and nothing else did
    # (the generated tests check that batches drawn as the training trips call nothing).
    # The clusters, ~90 trips each, are too few to score; the page has the reports' style.
    calls = json.loads((project.path / "data/drift.json").read_text())
    drifted = {(c["version"], c["column"]) for c in calls if c["drift"]}
    assert drifted == {("1.8.0", "is_weekend"), ("1.9.0", "is_weekend")}, drifted
    assert {c["group"] for c in calls if c["column"]} == {"all"}
    assert all(c["note"].startswith("too few trips (") for c in calls if not c["column"])
    dom = dump_dom(project.path / "data/drift.html", tmp_path)
    assert "font-family: system-ui" in dom and "<th>cluster</th>" in dom
    assert "too few trips (" in dom and "since" in dom
    drawn = chart_ticks(dom)
    assert len(drawn) == 2 * 5 and all(x >= 2 and y >= 2 for a in drawn.values() for x, y in a)
    # Ridge against gradient boosting on the same trips: the canary is better, and promoted.
    assert re.search(r"^all +\d{3} .* better$", result.stdout, flags=re.M), result.stdout
    assert "promote 1.9.0 to 4-7 (50%): better" in result.stdout
    assert project.git("status", "--porcelain") == ""  # data/ is ignored


def chromium_flags(tmp_path: Path) -> tuple[str, list[str]]:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")
    return chromium, ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                      "--no-first-run", "--disable-background-networking",
                      "--disable-component-update", "--disable-sync",
                      f"--user-data-dir={tmp_path / 'chromium'}"]


def dump_dom(page: Path, tmp_path: Path) -> str:
    """The page as headless Chromium parsed and laid it out."""
    chromium, flags = chromium_flags(tmp_path)
    return subprocess.run([chromium, *flags, "--dump-dom", page.as_uri()], capture_output=True,
                          text=True, timeout=120, check=True).stdout


def chart_ticks(dom: str) -> dict[str, list[tuple[int, int]]]:
    """Each chart (`<svg id="plot-...">`, drawn by matplotlib) of a page as Chromium laid it
    out: for each of its axes, the ticks of its x axis and of its y axis."""
    found = {}
    for match in re.finditer(r'<svg id="(plot-[\w-]+)"', dom):
        svg = dom[match.start() : dom.index("</svg>", match.start())]
        axes = re.split(r'id="matplotlib\.axis_\d+"', svg)[1:]  # x, y, x, y, ...
        ticks = [len(re.findall(r'id="[xy]tick_\d+"', axis)) for axis in axes]
        found[match.group(1)] = list(zip(ticks[0::2], ticks[1::2], strict=True))
    return found


def assert_report_renders(report: Path, tmp_path: Path) -> None:
    """Headless Chromium lays the page out: its three charts, every axis with ticks, both
    versions drawn. The screenshot stays in tmp_path (pytest keeps the last runs'), named
    in any failure."""
    chromium, flags = chromium_flags(tmp_path)
    png = tmp_path / "report.png"
    subprocess.run([chromium, *flags, "--window-size=1200,1800", f"--screenshot={png}",
                    report.as_uri()], capture_output=True, timeout=120, check=True)
    dom = dump_dom(report, tmp_path)
    charts = chart_ticks(dom)
    assert set(charts) == {"plot-metrics", "plot-predictions", "plot-residuals"}, png
    assert all(x >= 2 and y >= 2 for axes in charts.values() for x, y in axes), (charts, png)
    assert dom.count('id="bar-') == 2 * len(charts["plot-metrics"]) >= 8, png
    assert len(set(re.findall(r'id="(series-plot-[\w.-]+)"', dom))) == 4, png
    pixels = Image.open(png).convert("RGB").getdata()
    counts = Counter(pixels)
    # Both versions' colours (OLD_COLOUR, NEW_COLOUR of reports/charts.py) fill the bars.
    assert counts[(0x1F, 0x77, 0xB4)] > 2000 and counts[(0xD6, 0x27, 0x28)] > 2000, png
