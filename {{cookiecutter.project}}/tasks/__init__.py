"""Release and development tasks: `inv --list`, `inv release`, `inv train -o model.max_depth=6`.

A module per concern (`inv --list` starts each task's line with it):

- `releasing` (release): build, bump, train-adhoc, deploy-workflow, release, check-bump,
  versions, retire, revive, rollback;
- `verdicts` (traffic): traffic, ab, compare;
- `runs` (runs): run-inference, run-scheduled, sample-data, drift;
- `serving` (serving): serve, serve-router, up, down, render-deployment;
- `experimenting` (experiments): train, experiments, tracking-server;
- `operations` (ops): gc, workers;
- `development` (dev): test, lint;

and `plumbing`, what they share (the flags' help, one-line errors, the release context).
The task modules import nothing from each other but `plumbing`.

Each task turns flags into a call of the package; heavy imports (kfp, google-cloud-storage,
scikit-learn) happen inside the tasks, so `inv --list` stays as fast as bare invoke. Every
task takes `--env local|dev|prod|airflow` and Hydra overrides (`-o key=value`, repeatable).
"""

from __future__ import annotations

from invoke import Collection, Task

from . import development, experimenting, operations, releasing, runs, serving, verdicts

MODULES = (releasing, verdicts, runs, serving, experimenting, operations, development)

# One flat collection: every task keeps its name (`inv release`, `inv traffic`), whichever
# module holds it.
ns = Collection()
for module in MODULES:
    for value in vars(module).values():
        if isinstance(value, Task) and value.__module__ == module.__name__:
            ns.add_task(value)
