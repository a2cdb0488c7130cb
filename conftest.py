"""Test-wide set-up: one local SageMaker stand-in for the whole session.

The stand-in (:class:`common.local.stack.LocalStack`) starts at most once per session and
exports its environment into ``os.environ``, which every notebook kernel started afterwards
inherits -- that is how the notebooks reach it, exactly as they would reach SageMaker.

* When notebooks are among the collected items (nbval), it starts right after collection,
  before the first kernel starts.
* Otherwise it starts on first use of the ``local_stack`` fixture.

It runs fast for tests: endpoints come up after about a second (120 simulated seconds at a
time scale of 120), and the replay backend sends its tokens without pacing. It stops (and
``os.environ`` is restored) at the end of the session.

The notebooks run in a kernel whose environment is like a fresh SageMaker Studio space's --
ipykernel and the SDK v2, no ``common`` -- built once per session (``tests/kernel_env.py``):
nbval gets its kernel name here, unless ``--nbval-kernel-name`` or ``--nbval-current-env`` was
given (or ``RECIPES_NOTEBOOK_KERNEL=current``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from common.local.stack import HEADLESS_NOTEBOOK_ENV, LocalStack

# nbval's notebook items live outside tests/, so the hooks that serve them live here, at the
# rootdir, where they see every item. The plugin is imported by the same top-level name the
# tests use (`from notebook_capture import ...`), so both share one module and one record.
sys.path.insert(0, str(Path(__file__).resolve().parent / "tests"))
pytest_plugins = ["notebook_capture"]

from kernel_env import studio_kernel  # noqa: E402  (found through the line above)

STACK_OPTIONS: dict[str, Any] = {
    # 120 simulated seconds per real second: an endpoint still comes up in about a second,
    # and a scale notebook's hour of autoscaling (provisioning, 15-minute scale-in, idle
    # release) passes in well under a minute.
    "time_scale": 120.0,
    "endpoint_delay_s": 120.0,  # simulated
    "ttft_s": 0.0,
    "tokens_per_s": 0.0,
    # Inference components: 4 streams per copy, each paced at 50 ms to the first token and
    # 1,000 tokens/s, so a 1..32-stream sweep queues past 4 (a knee) in a few seconds.
    "copy_concurrency": 4,
    "copy_ttft_s": 0.05,
    "copy_tokens_per_s": 1000.0,
}

_stack: LocalStack | None = None


def _ensure_stack() -> LocalStack:
    global _stack
    if _stack is None:
        stack = LocalStack(**STACK_OPTIONS)
        stack.start()
        stack.apply_env()
        # nbval has no widget front end (the live view prints, so tests can read it), and
        # the harness opts in to the notebooks' guarded clean-up, as a reader would.
        os.environ.update(HEADLESS_NOTEBOOK_ENV)
        _stack = stack
    return _stack


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config,
                                  items: list[pytest.Item]) -> None:
    """Start the stand-in before nbval starts a kernel, if any notebook is collected, and give
    nbval the fresh Studio-like kernel (unless a kernel was chosen on the command line)."""
    _deselect_what_the_side_by_side_test_runs(config, items)
    if not config.option.collectonly and any(item.path.suffix == ".ipynb" for item in items):
        _ensure_stack()
        option = config.option
        if not (getattr(option, "nbval_kernel_name", None)
                or getattr(option, "nbval_current_env", False)):
            option.nbval_kernel_name = studio_kernel()


SIDE_BY_SIDE_TEST = ("tests/test_fresh_studio.py::"
                     "test_two_recipes_side_by_side_each_inference_streams_from_its_own")


def _deselect_what_the_side_by_side_test_runs(config: pytest.Config,
                                               items: list[pytest.Item]) -> None:
    """The side-by-side test runs the 7B TGI and LMI pairs itself (both deploys, then both
    inference notebooks) and records them for later tests: when it is collected, nbval's
    runs of those four notebooks are deselected, so the suite runs them once."""
    if not any(item.nodeid == SIDE_BY_SIDE_TEST for item in items):
        return
    from common.notebooks.generator import recipe_paths

    root = Path(__file__).resolve().parent
    owned = {path.resolve() for container in ("tgi", "lmi")
             for path in recipe_paths(container, "7b", root=root)}
    deselected = [item for item in items
                  if item.path.suffix == ".ipynb" and item.path.resolve() in owned]
    if deselected:
        items[:] = [item for item in items if item not in deselected]
        config.hook.pytest_deselected(items=deselected)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Stop the stand-in (joining its threads) and restore the environment."""
    global _stack
    if _stack is not None:
        _stack.stop()
        _stack = None


@pytest.fixture(scope="session")
def local_stack() -> LocalStack:
    """The session's running stand-in, its environment applied to ``os.environ``."""
    return _ensure_stack()


@pytest.fixture(scope="session")
def notebook_kernel() -> str:
    """The kernel name to run recipe notebooks with (see ``tests/kernel_env.py``)."""
    return studio_kernel()


@pytest.fixture
def request_log(local_stack: LocalStack) -> Callable[[], list[dict[str, Any]]]:
    """A function returning the runtime requests received since this test began.

    The log itself is never cleared: later tests read what the notebooks sent.
    """
    start = len(local_stack.requests())
    return lambda: local_stack.requests()[start:]
