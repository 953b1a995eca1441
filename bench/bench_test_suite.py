"""The generated project's fast tier (`inv test`): its wall time, median of runs made after
a first run has cached the bytecode.

With `--against REF` the same project is also rendered from the template at git REF, and
the two are run alternately in this one script (the machine's speed drifts by 20% over an
hour): the ratio is the figure to compare, not one run's seconds. Each run's CPU time (user
and system, of every process it waited for) is reported too: the work done, which another
load on the machine changes less than it changes the wall time.

    python bench/bench_test_suite.py [--against REF] [--repeat N]
"""

from __future__ import annotations

import argparse
import io
import resource
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import TEMPLATE, generated_project, median, run, save  # noqa: E402


def template_at(ref: str, where: Path) -> Path:
    """The template's files at git `ref`, extracted into `where`."""
    archive = subprocess.run(["git", "archive", ref], cwd=TEMPLATE, check=True,
                             capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(where, filter="data")
    return where


def inv_test(project: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one `inv test`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    try:
        run([str(project / ".venv/bin/inv"), "test"], project)
    except subprocess.CalledProcessError as failed:
        sys.exit(f"inv test failed in {project}:\n{failed.stdout[-3000:]}{failed.stderr[-2000:]}")
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", help="a git ref of the template to compare with")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        projects = {"this tree": generated_project(root / "now")}
        if args.against:
            old = template_at(args.against, root / "template")
            projects[args.against] = generated_project(root / "then", old)
        for project in projects.values():
            inv_test(project)  # Python compiles and caches every module the first time
        samples: dict[str, list[float]] = {name: [] for name in projects}
        cpu: dict[str, list[float]] = {name: [] for name in projects}
        for _ in range(args.repeat):
            for name, project in projects.items():
                wall, used = inv_test(project)
                samples[name].append(round(wall, 2))
                cpu[name].append(round(used, 2))
    figures: dict = {
        "inv_test_s": median(samples["this tree"]),
        "runs_s": samples,
        "cpu_s": median(cpu["this tree"]),
        "runs_cpu_s": cpu,
        "repeat": args.repeat,
    }
    if args.against:
        figures[f"inv_test_at_{args.against}_s"] = median(samples[args.against])
        figures["ratio_to_baseline"] = round(
            median(samples["this tree"]) / median(samples[args.against]), 3
        )
        figures[f"cpu_at_{args.against}_s"] = median(cpu[args.against])
        figures["cpu_ratio_to_baseline"] = round(
            median(cpu["this tree"]) / median(cpu[args.against]), 3
        )
    save("test_suite", figures)


if __name__ == "__main__":
    main()
