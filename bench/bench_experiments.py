"""What experiments cost, in a generated project (default answers), fresh processes:

1. One `inv train` with tracking off, against tracking to the project's SQLite store and
   to a tracking server (`inv tracking-server`'s, on loopback): the cost of tracking a run.
2. An Optuna search of 10 trials against 10 separate `inv train` runs of the same size: a
   search pays the interpreter and imports once.
3. What tracking off adds: which of MLflow, Optuna and the project's sweeper module a
   single `inv train` run imports (none is expected), and the sweeper module's own import
   time, paid when Hydra scans for sweepers (a multirun).

Medians of 3; every figure from this one run. Prints and saves bench/results/experiments.json.
"""

from __future__ import annotations

import re
import socket
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import generated_project, median, run, save, timed  # noqa: E402

REPEAT = 3
TRIALS = 10


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    with tempfile.TemporaryDirectory() as directory:
        project = generated_project(Path(directory))
        python = str(project / ".venv/bin/python")
        inv = str(project / ".venv/bin/inv")

        def train(*overrides: str, multirun: bool = False, **env: str) -> None:
            flags = ["--multirun"] if multirun else []
            run([inv, "train", *flags, *(a for o in overrides for a in ("-o", o))], project,
                **env)

        figures: dict = {}
        figures["train_tracking_off_s"] = median(timed(train, REPEAT))
        figures["train_tracking_sqlite_s"] = median(
            timed(lambda: train("tracking=mlflow"), REPEAT))
        home = Path(directory) / "server"
        home.mkdir()
        started = run([python, "-c",
                       "import sys; from pathlib import Path; "
                       "from taxi_eta.tracking_server import start; "
                       "s = start(Path(sys.argv[1]), int(sys.argv[2])); print(s.url, s.pid)",
                       str(home), str(free_port())], project)
        url, pid = started.stdout.split()
        try:
            figures["train_tracking_server_s"] = median(
                timed(lambda: train("tracking=mlflow", MLFLOW_TRACKING_URI=url), REPEAT))
        finally:
            run([python, "-c", f"from taxi_eta.tracking_server import stop; stop({pid})"],
                project)
        figures["tracking_sqlite_over_off"] = round(
            figures["train_tracking_sqlite_s"] / figures["train_tracking_off_s"], 3)
        figures["tracking_server_over_off"] = round(
            figures["train_tracking_server_s"] / figures["train_tracking_off_s"], 3)

        search = timed(lambda: train("hparams_search=gradient_boosting_optuna",
                                     f"hydra.sweeper.n_trials={TRIALS}", multirun=True), 1)
        figures[f"search_{TRIALS}_trials_s"] = median(search)
        figures[f"separate_runs_{TRIALS}_s"] = round(figures["train_tracking_off_s"] * TRIALS, 3)

        # Hydra imports the plugin only when it scans for sweepers (a multirun); by then
        # the Hydra modules the sweeper uses are loaded: its own cost is the module itself.
        preload = ("import hydra.core.plugins, hydra.core.override_parser.overrides_parser, "
                   "hydra.plugins.sweeper, hydra.utils; ")
        importtime = run([python, "-X", "importtime", "-c",
                          preload + "import hydra_plugins.taxi_eta_optuna"], project).stderr
        own = [line for line in importtime.splitlines() if line.endswith("taxi_eta_optuna")]
        figures["sweeper_module_import_ms"] = round(
            int(re.split(r"\s*\|\s*", own[0])[1]) / 1000, 1) if own else None
        single = run([python, "-X", "importtime", "-m", "taxi_eta.train", "data.n_trips=500",
                      f"hydra.run.dir={directory}/single"], project).stderr
        figures["single_run_imports"] = sorted(
            {name for name in ("mlflow", "optuna", "hydra_plugins.taxi_eta_optuna")
             if re.search(rf"\|\s*{re.escape(name)}$", single, flags=re.M)})
        save("experiments", figures)


if __name__ == "__main__":
    main()
