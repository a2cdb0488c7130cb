"""How long `bash scripts/setup.sh demo|test` takes, fresh and warm, in clean clones.

Run from the repository root (with the project's environment, for the results writer)::

    python benchmarks/setup_time.py                      # demo: 3 runs of each scenario
    python benchmarks/setup_time.py --targets demo,test --runs 1 --first-command

Each run clones the repository (``git clone`` of the committed HEAD) into a temporary
folder and gives setup.sh fresh, empty uv and pip caches (``UV_CACHE_DIR``,
``PIP_CACHE_DIR``), then times, for each target:

* **fresh** -- no ``.venv``, empty caches: a new machine;
* **re-run** -- the same command again in the same clone: everything is in place;
* **new clone, warm caches** -- a second clone with the caches the fresh run filled: a
  second checkout on the same machine.

``--first-command`` also times the README's first command as a new user runs it in a fresh
clone: ``bash scripts/setup.sh demo && .venv/bin/python -m common.local demo``.
``--installer pip`` measures setup.sh's pip fallback (``SETUP_INSTALLER=pip``) instead.

Each scenario's row has the median, lowest and highest wall time over the runs, the CPU
time its processes used (user + system, median; unlike wall time it hardly moves with other
work on the machine), and the median of each step's time as setup.sh printed it. The load
average is noted per run: on a shared machine the wall times say as much about the
neighbours as about the setup. The table is printed and written to
``benchmarks/results/setup_time.csv`` and ``.md`` (``setup_time_pip`` with ``--installer
pip``; ``--name`` picks another name). A measurement, not a test: nothing here passes or fails.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from client_overhead import command_line, machine, publish  # noqa: E402

STEP_LINE = re.compile(r"^\[\d+/\d+\] (?P<title>.+?) \.\.\. (?P<seconds>\d+\.\d) s$")
FIRST_COMMAND = "bash scripts/setup.sh demo && .venv/bin/python -m common.local demo"


@dataclass
class Timing:
    """One timed command: wall and CPU seconds, the load average, setup.sh's step times."""

    wall_s: float
    cpu_s: float
    load: float
    steps: dict[str, float] = field(default_factory=dict)


def timed(command: str, cwd: Path, env: dict[str, str], log: Path) -> Timing:
    """Run ``command`` (bash) in ``cwd``; return its timing.

    Raises:
        RuntimeError: the command failed (the message names its output file).
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    with log.open("w") as output:
        done = subprocess.run(["bash", "-c", command], cwd=cwd, env=env, stdout=output,
                              stderr=subprocess.STDOUT, check=False)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"`{command}` failed in {cwd} (exit {done.returncode}); its "
                           f"output: {log}")
    steps = {}
    for line in log.read_text().splitlines():
        match = STEP_LINE.match(line)
        if match:
            steps[short_title(match["title"])] = float(match["seconds"])
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Timing(wall, cpu, os.getloadavg()[0], steps)


def short_title(title: str) -> str:
    """A step's column name: its title up to the first parenthesis or colon."""
    return re.split(r" \(|:", title)[0].removeprefix("the ").strip()


REPOSITORY = ROOT  # what is cloned: --repo changes it


def clone(into: Path) -> Path:
    """Clone :data:`REPOSITORY`'s HEAD into ``into``; returns the clone's root."""
    subprocess.run(["git", "clone", "-q", str(REPOSITORY), str(into)], check=True)
    return into


def head_commit() -> str:
    """The cloned repository's HEAD: short hash and subject."""
    done = subprocess.run(["git", "-C", str(REPOSITORY), "log", "-1", "--format=%h %s"],
                          capture_output=True, text=True, check=False)
    return done.stdout.strip() or "an unknown commit"


def run_once(target: str, work: Path, env: dict[str, str], first_command: bool,
             echo) -> dict[str, Timing]:
    """One run of every scenario for ``target`` under ``work``; returns scenario -> Timing."""
    timings: dict[str, Timing] = {}
    fresh = clone(work / f"{target}-fresh")
    timings["fresh"] = timed(f"bash scripts/setup.sh {target}", fresh, env,
                             work / f"{target}-fresh.log")
    echo("fresh", timings["fresh"])
    timings["re-run"] = timed(f"bash scripts/setup.sh {target}", fresh, env,
                              work / f"{target}-rerun.log")
    echo("re-run", timings["re-run"])
    second = clone(work / f"{target}-second")
    timings["new clone, warm caches"] = timed(f"bash scripts/setup.sh {target}", second, env,
                                              work / f"{target}-second.log")
    echo("new clone, warm caches", timings["new clone, warm caches"])
    if first_command and target == "demo":
        for cache in ("uv-cache", "pip-cache"):  # a new user: nothing cached
            shutil.rmtree(work / cache, ignore_errors=True)
            (work / cache).mkdir()
        readme = clone(work / "first-command")
        timings["README first command"] = timed(FIRST_COMMAND, readme, env,
                                                work / "first-command.log")
        echo("README first command", timings["README first command"])
    return timings


def main(argv: list[str] | None = None) -> int:
    """Measure, print the table and write the results; returns 0."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", default="demo",
                        help="comma-separated setup.sh targets: demo, test (default: demo)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each scenario (3)")
    parser.add_argument("--first-command", action="store_true",
                        help="also time the README's first command in a fresh clone")
    parser.add_argument("--installer", choices=("uv", "pip"), default="uv",
                        help="uv (setup.sh's default) or its pip fallback")
    parser.add_argument("--repo", type=Path, default=ROOT,
                        help="the git repository whose HEAD is cloned (default: this one)")
    parser.add_argument("--name", default=None,
                        help="the results' file name (default: setup_time, or setup_time_pip "
                             "with --installer pip)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the clones and logs (their folder is printed)")
    args = parser.parse_args(argv)
    targets = [t for t in args.targets.split(",") if t]
    if not set(targets) <= {"demo", "test"} or not targets:
        parser.error("--targets takes demo, test or demo,test")
    global REPOSITORY
    REPOSITORY = args.repo.resolve()

    results: dict[tuple[str, str], list[Timing]] = {}
    for run in range(1, args.runs + 1):
        for target in targets:
            work = Path(tempfile.mkdtemp(prefix=f"setup-time-{target}-"))
            env = {k: v for k, v in os.environ.items()
                   if k not in {"VIRTUAL_ENV", "PYTHONPATH", "UV_CACHE_DIR", "PIP_CACHE_DIR"}}
            env.update(UV_CACHE_DIR=str(work / "uv-cache"), PIP_CACHE_DIR=str(work / "pip-cache"),
                       SETUP_INSTALLER=args.installer)
            env["PATH"] = os.pathsep.join(
                p for p in env.get("PATH", "").split(os.pathsep)
                if not p.startswith(str(ROOT / ".venv")))

            def echo(scenario: str, timing: Timing, target: str = target, run: int = run):
                print(f"run {run} {target:4} {scenario:24} {timing.wall_s:6.1f} s wall "
                      f"{timing.cpu_s:6.1f} s CPU  load {timing.load:.1f}", flush=True)

            try:
                for scenario, timing in run_once(target, work, env, args.first_command,
                                                 echo).items():
                    results.setdefault((target, scenario), []).append(timing)
            finally:
                if args.keep:
                    print(f"kept: {work}")
                else:
                    shutil.rmtree(work, ignore_errors=True)

    step_names: list[str] = []
    for timings in results.values():
        for timing in timings:
            step_names += [s for s in timing.steps if s not in step_names]
    rows = []
    for (target, scenario), timings in results.items():
        walls = [t.wall_s for t in timings]
        row = {"target": target, "scenario": scenario, "runs": str(len(timings)),
               "wall_s_median": f"{statistics.median(walls):.1f}",
               "wall_s_min": f"{min(walls):.1f}", "wall_s_max": f"{max(walls):.1f}",
               "cpu_s_median": f"{statistics.median(t.cpu_s for t in timings):.1f}",
               "load_avg": " / ".join(f"{t.load:.1f}" for t in timings)}
        for step in step_names:
            values = [t.steps[step] for t in timings if step in t.steps]
            row[f"{step} (s)"] = f"{statistics.median(values):.1f}" if values else ""
        rows.append(row)
    name = args.name or ("setup_time" if args.installer == "uv" else "setup_time_pip")
    publish(name, rows, [
        "",
        f"Installer: {args.installer}. Fresh: a new clone, no .venv, empty uv and pip caches; "
        "re-run: setup.sh again in the same clone; new clone, warm caches: a second clone "
        "with the caches the fresh run filled. Step columns: the median of what setup.sh "
        "printed (an empty cell: the step had nothing to do and printed no time). "
        "load_avg: the 1-minute load average after each run -- on 2 cores shared with other "
        "work, wall times above the CPU time mostly measure the neighbours.",
        f"Cloned: {REPOSITORY} at {head_commit()}.",
        f"Machine: {machine()}.",
        f"Command: `{command_line()}`",
    ])
    return 0


if __name__ == "__main__":
    sys.exit(main())
