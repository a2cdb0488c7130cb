"""How long the first deploy notebook takes in a kernel that has never seen this repository.

Run from the repository root (with the project's environment)::

    python benchmarks/fresh_kernel.py                    # the 7B TGI deploy notebook, 1 run
    python benchmarks/fresh_kernel.py --recipe lmi-7b --runs 2

Each run builds the tests' throwaway kernel environment (``tests/kernel_env.py``: a uv
virtual environment with ipykernel and the SageMaker SDK v2, as a fresh SageMaker Studio space
has, and no ``common``), starts the local stand-in, and executes the deploy notebook
unmodified with nbclient, as a reader's "Run all" does: the ``%pip install -r
../../requirements.txt`` cell installs everything (the SDK v3 over v2, this repository's
``common``), the next cell makes it importable without a restart, and the rest deploys. Then
it runs the same notebook again in the same environment, as a second notebook (or a re-run)
does, when pip finds everything installed. Per run the table has the environment's build
time, the ``%pip`` cell, the cell after it, the rest of the notebook, the whole notebook from
kernel start, and the load average (a shared machine's neighbours move wall times a lot).
Written to ``benchmarks/results/fresh_kernel.csv`` and ``.md``. A measurement, not a test.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks"), str(ROOT / "tests")]

from client_overhead import command_line, machine, publish  # noqa: E402

RECIPES = {"tgi-7b": ("tgi", "7b"), "lmi-7b": ("lmi", "7b")}


def _cell_seconds(cell) -> float:
    timing = cell.metadata.get("execution", {})
    start = timing.get("iopub.execute_input") or timing.get("shell.execute_reply.started")
    end = timing.get("shell.execute_reply")
    if not start or not end:
        return 0.0
    parse = lambda text: datetime.fromisoformat(text.replace("Z", "+00:00"))  # noqa: E731
    return (parse(end) - parse(start)).total_seconds()


def _run_notebook(path: Path, kernel_name: str) -> tuple[float, list[float]]:
    import nbformat
    from kernel_env import environment
    from nbclient import NotebookClient

    from common.local.stack import HEADLESS_NOTEBOOK_ENV

    notebook = nbformat.read(path, as_version=4)
    started = time.perf_counter()
    with environment(HEADLESS_NOTEBOOK_ENV):
        NotebookClient(notebook, timeout=1800, kernel_name=kernel_name,
                       resources={"metadata": {"path": str(path.parent)}}).execute()
    total = time.perf_counter() - started
    return total, [_cell_seconds(c) for c in notebook.cells if c.cell_type == "code"]


def main(argv: list[str] | None = None) -> int:
    """Measure, print the table and write the results; returns 0."""
    from kernel_env import STUDIO_PACKAGES, create_kernel_env

    from common.local.stack import LocalStack
    from common.notebooks.generator import recipe_paths

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", choices=sorted(RECIPES), default="tgi-7b")
    parser.add_argument("--runs", type=int, default=1, help="fresh environments (1)")
    args = parser.parse_args(argv)
    deploy, _ = recipe_paths(*RECIPES[args.recipe], root=ROOT)
    rows = []
    with LocalStack(time_scale=120.0, endpoint_delay_s=120.0, ttft_s=0.0,
                    tokens_per_s=0.0) as stack:
        stack.apply_env()
        for number in range(1, args.runs + 1):
            root = Path(tempfile.mkdtemp(prefix="fresh-kernel-"))
            try:
                env = create_kernel_env(root, kernel_name=f"fresh-kernel-bench-{number}")
                paths = [str(env.jupyter_path), os.environ.get("JUPYTER_PATH", "")]
                os.environ["JUPYTER_PATH"] = os.pathsep.join(filter(None, paths))
                for which in ("first notebook (fresh)", "again (installed)"):
                    total, cells = _run_notebook(deploy, env.kernel_name)
                    rows.append({
                        "run": str(number), "notebook": which,
                        "env_build_s": f"{env.build_s:.1f}" if which.startswith("first")
                        else "-",
                        "pip_cell_s": f"{cells[0]:.1f}", "reread_cell_s": f"{cells[1]:.2f}",
                        "rest_s": f"{sum(cells[2:]):.1f}", "notebook_s": f"{total:.1f}",
                        "load_1min": f"{os.getloadavg()[0]:.1f}"})
                    print(rows[-1], flush=True)
            finally:
                shutil.rmtree(root, ignore_errors=True)
    publish("fresh_kernel", rows, [
        f"`{command_line()}`: {deploy.relative_to(ROOT)} in a fresh kernel environment "
        f"({', '.join(STUDIO_PACKAGES)}, built with uv), against the local stand-in "
        "(endpoint up in ~1 s). notebook_s is from kernel start to the last cell; the %pip "
        "cell installs from PyPI through the stand-in's proxy (and this machine's local "
        "wheel folders).", machine()])
    return 0


if __name__ == "__main__":
    sys.exit(main())
