"""A throwaway kernel environment like a fresh SageMaker Studio space, for the notebook tests.

A new reader's kernel has ipykernel and the SageMaker Python SDK v2 that Studio images ship,
and nothing of this repository. The notebooks' first cells (``%pip install -r
../../requirements.txt``, then re-reading the ``.pth`` files) must make ``common`` importable
in that kernel without a restart -- so the tests run the notebooks, unmodified, in such an
environment instead of the test environment (where ``common`` is installed already):

* :func:`create_kernel_env` builds a virtual environment with uv (``uv venv --seed``, then
  ``ipykernel`` and ``sagemaker<3``; seconds with a warm uv cache), checks that it cannot
  import ``common``, and writes a kernelspec (:data:`KERNEL_NAME`) whose ``argv`` is its
  Python, with ``PYTHONPATH`` emptied;
* :func:`studio_kernel` does that once per test process (a pytest session; each pytest-xdist
  worker is one, and gets its own folder from ``mkdtemp``, so two workers starting at once
  never share a half-built environment or one ``%pip`` at a time), puts the kernelspec's
  folder first on ``JUPYTER_PATH`` (jupyter_client reads it when a kernel starts) and
  returns the kernel's name; nbval gets it as ``--nbval-kernel-name`` from the root
  ``conftest.py``, nbclient-based tests pass it as ``kernel_name``.

Two kinds, one each per process, built on first use:

* ``studio_kernel(fresh=True)``: exactly a new Studio space's kernel (ipykernel and the SDK
  v2). Its first notebook's ``%pip`` installs everything -- the SDK v3 over v2, and
  ``common`` -- which takes 40 to 90 s; ``tests/test_fresh_studio.py`` runs the first
  notebooks of its side-by-side test in it (the issue's "done when").
* ``studio_kernel()``: the same environment, then the requirements a ``%pip`` cell would add
  installed already -- all of ``requirements.txt`` but its ``-e ../..`` line, i.e. everything
  but this repository's ``common`` (with uv, from its cache: seconds). Every other notebook
  test runs here: the ``%pip`` cell, unmodified, still has to install ``common`` and the cell
  after it still has to make it importable without a restart, but no worker pays the
  first full install again.

The kernelspec has its own name, not ``python3``, so what else starts a ``python3`` kernel in
the session (the demo command, JupyterLab in the browser test) keeps the test environment.
``RECIPES_NOTEBOOK_KERNEL=current`` skips all this (the notebooks run in ``python3``, the test
environment), for a quicker local run. The environment is removed when the process ends.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from common.local.installer import find_uv, pip_config_environment

__all__ = ["KERNEL_ENV_VAR", "KERNEL_NAME", "STUDIO_PACKAGES", "WARM_KERNEL_NAME", "KernelEnv",
           "create_kernel_env", "environment", "studio_kernel"]

KERNEL_NAME = "recipes-fresh-studio"
"""The kernelspec of the fresh throwaway environment (ipykernel and the SDK v2 only)."""
WARM_KERNEL_NAME = "recipes-studio-warm"
"""The kernelspec of the throwaway environment with every requirement but ``common``."""
REQUIREMENTS = Path(__file__).resolve().parents[1] / "requirements.txt"
KERNEL_ENV_VAR = "RECIPES_NOTEBOOK_KERNEL"
"""``current``: run the notebooks in the test environment's ``python3`` kernel instead."""
STUDIO_PACKAGES = ("ipykernel", "sagemaker<3")
"""What a fresh Studio kernel has that matters here: ipykernel and the SDK v2."""


@dataclass(frozen=True)
class KernelEnv:
    """A built environment: its folder, interpreter, kernelspec folder and build time."""

    root: Path
    python: Path
    jupyter_path: Path
    kernel_name: str
    build_s: float


def _run(argv: list[str], env: dict[str, str] | None = None) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, check=False,
                          env={**os.environ, **(env or {})})
    if done.returncode != 0:
        raise RuntimeError(f"building the notebooks' kernel environment failed: "
                           f"{' '.join(argv)}\n{done.stdout[-2000:]}{done.stderr[-2000:]}")


def create_kernel_env(root: Path, *, kernel_name: str = KERNEL_NAME,
                      warm: bool = False) -> KernelEnv:
    """Build the throwaway environment in ``root`` (a new or empty folder).

    ``warm``: also install every line of ``requirements.txt`` but its ``-e`` one (what the
    notebooks' ``%pip`` would add, but ``common``).

    Returns:
        The :class:`KernelEnv`.

    Raises:
        RuntimeError: uv is missing, a step failed (its output in the message), or the new
            environment can import ``common`` (then the tests would prove nothing).
    """
    started = time.perf_counter()
    uv = find_uv(sys.executable)
    if uv is None:
        raise RuntimeError("uv is needed to build the notebooks' kernel environment: "
                           "bash scripts/setup.sh test installs it into .venv")
    sources = pip_config_environment(sys.executable)  # uv reads no pip.conf
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    _run([uv, "venv", "--quiet", "--seed", "--python", sys.executable, str(root)], sources)
    python = root / "bin" / "python"
    _run([uv, "pip", "install", "--quiet", "--python", str(python), *STUDIO_PACKAGES], sources)
    if warm:
        wanted = root / "requirements-but-common.txt"
        wanted.write_text("".join(line + "\n" for line in REQUIREMENTS.read_text().splitlines()
                                  if not line.strip().startswith("-e")))
        _run([uv, "pip", "install", "--quiet", "--python", str(python), "-r", str(wanted)],
             sources)
    probe = subprocess.run([str(python), "-c", "import common"], capture_output=True,
                           env={**os.environ, "PYTHONPATH": ""}, cwd=root, check=False)
    if probe.returncode == 0:
        raise RuntimeError(f"the fresh environment {root} (Python {version}) can import "
                           "`common` before any %pip: the notebook tests would prove nothing")
    jupyter_path = root / "share" / "jupyter"
    spec = jupyter_path / "kernels" / kernel_name
    spec.mkdir(parents=True, exist_ok=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": ("Python 3 (Studio-like environment, requirements but common)" if warm
                         else "Python 3 (fresh Studio-like environment)"),
        "language": "python",
        "env": {"PYTHONPATH": ""},
    }, indent=1))
    return KernelEnv(root, python, jupyter_path, kernel_name,
                     time.perf_counter() - started)


_ENVS: dict[bool, KernelEnv] = {}


def studio_kernel(*, fresh: bool = False) -> str:
    """Build (once per process and kind) and register a throwaway kernel; return its name.

    ``fresh``: ipykernel and the SDK v2 only, as a new Studio space; else everything but
    ``common`` installed already (see the module's docstring). Returns ``"python3"`` when
    ``RECIPES_NOTEBOOK_KERNEL=current``.
    """
    if os.environ.get(KERNEL_ENV_VAR) == "current":
        return "python3"
    if fresh not in _ENVS:
        root = Path(tempfile.mkdtemp(prefix="recipes-kernel-"))
        atexit.register(shutil.rmtree, root, True)
        env = create_kernel_env(root, kernel_name=KERNEL_NAME if fresh else WARM_KERNEL_NAME,
                                warm=not fresh)
        _ENVS[fresh] = env
        paths = [str(env.jupyter_path), *filter(None, os.environ.get(
            "JUPYTER_PATH", "").split(os.pathsep))]
        os.environ["JUPYTER_PATH"] = os.pathsep.join(paths)
        what = ", ".join(STUDIO_PACKAGES) + ("" if fresh else ", requirements.txt but common")
        print(f"\nnotebook kernel: {'a fresh' if fresh else 'an'} environment ({what}) in "
              f"{root}, built in {env.build_s:.1f} s", file=sys.stderr)
    return _ENVS[fresh].kernel_name


@contextmanager
def environment(values: Mapping[str, str]) -> Iterator[None]:
    """Set ``values`` in ``os.environ`` for the block (kernels started in it inherit them),
    then put back what was there."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
