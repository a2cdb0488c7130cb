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

__all__ = ["KERNEL_ENV_VAR", "KERNEL_NAME", "STUDIO_PACKAGES", "KernelEnv",
           "create_kernel_env", "current_env", "environment", "studio_kernel"]

KERNEL_NAME = "recipes-fresh-studio"
"""The kernelspec of the throwaway environment."""
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


def create_kernel_env(root: Path, *, kernel_name: str = KERNEL_NAME) -> KernelEnv:
    """Build the throwaway environment in ``root`` (a new or empty folder).

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
        "display_name": "Python 3 (fresh Studio-like environment)",
        "language": "python",
        "env": {"PYTHONPATH": ""},
    }, indent=1))
    return KernelEnv(root, python, jupyter_path, kernel_name,
                     time.perf_counter() - started)


_ENV: KernelEnv | None = None


def studio_kernel() -> str:
    """Build (once per process) and register the throwaway kernel; return its name.

    Returns ``"python3"`` when ``RECIPES_NOTEBOOK_KERNEL=current``.
    """
    global _ENV
    if os.environ.get(KERNEL_ENV_VAR) == "current":
        return "python3"
    if _ENV is None:
        root = Path(tempfile.mkdtemp(prefix="recipes-kernel-"))
        atexit.register(shutil.rmtree, root, True)
        _ENV = create_kernel_env(root)
        paths = [str(_ENV.jupyter_path), *filter(None, os.environ.get(
            "JUPYTER_PATH", "").split(os.pathsep))]
        os.environ["JUPYTER_PATH"] = os.pathsep.join(paths)
        print(f"\nnotebook kernel: a fresh environment ({', '.join(STUDIO_PACKAGES)}) in "
              f"{root}, built in {_ENV.build_s:.1f} s", file=sys.stderr)
    return _ENV.kernel_name


def current_env() -> KernelEnv | None:
    """The environment :func:`studio_kernel` built in this process, if any."""
    return _ENV


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
