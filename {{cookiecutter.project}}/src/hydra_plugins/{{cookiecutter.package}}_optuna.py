"""An Optuna search as a Hydra sweeper: `override /hydra/sweeper: optuna` (conf/hparams_search/).

Hydra's own `hydra-optuna-sweeper` would be the convention, but its latest release pins
`optuna<3` (2.10, 2021). This sweeper runs a current Optuna behind the same configuration:
`hydra.sweeper.params` in Hydra's sweep syntax (`choice(...)`, `range(...)`,
`interval(...)`, `tag(log, interval(...))`), `direction`, `n_trials`, `sampler`,
`study_name` and `storage` mean what they mean there. Trials run one after another through
Hydra's launcher, so a seeded sampler gives the same trials every time.

It lives in the `hydra_plugins` namespace because Hydra only instantiates sweepers found
there. Optuna is imported when a search starts, never when Hydra scans its plugins.
"""

from __future__ import annotations

import logging
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import (
    ChoiceSweep,
    IntervalSweep,
    Override,
    RangeSweep,
    Transformer,
)
from hydra.core.plugins import Plugins
from hydra.core.utils import JobStatus
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)
RESULTS_FILE = "optimization_results.yaml"


def distribution(override: Override) -> Any:
    """The Optuna distribution of one sweep override (a fixed override gives None)."""
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    value: Any = override.value()
    if isinstance(value, ChoiceSweep) or (isinstance(value, RangeSweep) and value.shuffle):
        choices: list[Any] = list(override.sweep_iterator(Transformer.encode))
        return CategoricalDistribution(choices)
    if isinstance(value, RangeSweep):
        start: Any = value.start  # Hydra has filled in every bound of a parsed range
        stop: Any = value.stop
        step: Any = value.step
        if any(isinstance(x, float) for x in (start, stop, step)):
            # range() excludes its stop; Optuna's high is inclusive
            last = start + step * ((stop - start) // step - (0 if (stop - start) % step else 1))
            return FloatDistribution(float(start), float(last), step=float(step))
        return IntDistribution(int(start), int(stop) - 1, step=int(step))
    if isinstance(value, IntervalSweep):
        low: Any = value.start
        high: Any = value.end
        log_scale = "log" in value.tags
        if isinstance(low, int) and isinstance(high, int):
            return IntDistribution(low, high, log=log_scale)
        return FloatDistribution(float(low), float(high), log=log_scale)
    return None


def search_space(arguments: Sequence[str]) -> tuple[dict[str, Any], dict[str, str]]:
    """Sweep overrides as Optuna distributions; the other overrides kept as they are."""
    space: dict[str, Any] = {}
    fixed: dict[str, str] = {}
    for override in OverridesParser.create().parse_overrides(list(arguments)):
        key = override.get_key_element()
        found = distribution(override) if override.is_sweep_override() else None
        if found is None:
            space.pop(key, None)  # a later fixed value wins over the config's range
            fixed[key] = override.get_value_element_as_str()
        else:
            fixed.pop(key, None)
            space[key] = found
    return space, fixed


class OptunaSweeper(Sweeper):
    def __init__(
        self,
        sampler: Any,
        direction: Any = "minimize",
        n_trials: int = 20,
        params: DictConfig | None = None,
        study_name: str | None = None,
        storage: str | None = None,
        max_failure_rate: float = 0.0,
    ) -> None:
        self.sampler, self.direction = sampler, direction
        self.n_trials, self.max_failure_rate = int(n_trials), float(max_failure_rate)
        self.params = params if params is not None else OmegaConf.create({})
        self.study_name, self.storage = study_name, storage

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config = config
        self.launcher: Any = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )
        self.sweep_dir = Path(str(config.hydra.sweep.dir))

    def sweep(self, arguments: list[str]) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)  # Hydra logs each trial
        space, fixed = search_space([*(f"{k!s}={v}" for k, v in self.params.items()), *arguments])
        if not space:
            raise ValueError("the search has no parameters: set hydra.sweeper.params")
        study = optuna.create_study(
            study_name=self.study_name,
            storage=self.storage,
            # Hydra instantiates the sweeper's config recursively: the sampler may be built
            sampler=self.sampler
            if not isinstance(self.sampler, DictConfig | dict)
            else instantiate(self.sampler),
            direction=self.direction,
            load_if_exists=True,
        )
        failures = 0
        for number in range(self.n_trials):
            trial = study.ask(space)
            overrides = (
                *(f"{k}={v}" for k, v in fixed.items()),
                *(f"{k}={v}" for k, v in trial.params.items()),
            )
            (result,) = self.launcher.launch([overrides], initial_job_idx=number)
            if result.status == JobStatus.COMPLETED:
                study.tell(trial, float(result.return_value))
            else:
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
                failures += 1
                log.warning(f"trial {number} failed: {result._return_value}")
                if failures > self.max_failure_rate * self.n_trials:
                    raise RuntimeError(
                        f"{failures} of {number + 1} trials failed, more than "
                        f"max_failure_rate={self.max_failure_rate} allows: {result._return_value}"
                    )
        self.report(study, fixed)

    def report(self, study: Any, fixed: dict[str, str]) -> None:
        """The best trial, written to the sweep folder and printed as the command that
        trains it again."""
        best = study.best_trial
        overrides = [
            *(f"{k}={v}" for k, v in fixed.items()),
            *(f"{k}={v}" for k, v in best.params.items()),
        ]
        results = {
            "name": study.study_name,
            "best_trial": best.number,
            "best_value": best.value,
            "best_params": dict(best.params),
            "best_overrides": overrides,
        }
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(OmegaConf.create(results), self.sweep_dir / RESULTS_FILE)
        command = shlex.join(["inv", "train", *(a for o in overrides for a in ("-o", o))])
        print(f"best: {best.value:.6g} in trial {best.number} of {len(study.trials)}")
        print(f"reproduce: {command}")
        trial = self.sweep_dir / str(best.number)  # hydra.sweep.subdir: the job's number
        if (trial / "metadata.json").is_file():
            shown = trial.relative_to(Path.cwd()) if trial.is_relative_to(Path.cwd()) else trial
            print(f"adopt it for the next release: inv experiments --adopt {shown}")
