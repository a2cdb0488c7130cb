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

import functools
import os
import re
import sys
from collections.abc import Callable, Iterator
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
from recipe_notebooks import recipe_id, recipe_notebooks  # noqa: E402

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


# --------------------------------------------------------------------------- parallel runs
#
# `python -m pytest -n auto` (pytest-xdist) runs the suite on worker processes, each with
# its own stand-in and its own fresh notebook kernel environment. A worker takes a *unit of
# work* whole (xdist_scope below): a test file, or a test of its own where one test is long,
# or a recipe's notebooks together with the tests that read what those notebooks did. The
# units are handed out longest first (the order pytest_collection_modifyitems gives them),
# so that no long unit is left to run alone at the end.

ROOT = Path(__file__).resolve().parent
SIDE_BY_SIDE_TEST = ("tests/test_fresh_studio.py::"
                     "test_two_recipes_side_by_side_each_inference_streams_from_its_own")
_PAIR_RUNS = "tests/test_notebook_runs.py::"
_SCALE_RUNS = "tests/test_scale_notebook_runs.py::"
_ONE_TEST_EACH = ("tests/test_variant_runs.py", "tests/test_fresh_studio.py",
                  "tests/test_preflight_notebook.py")
"""Files whose tests each take tens of seconds: each test is a unit of its own."""
_BROWSER = re.compile(r"tests/test_browser\w*\.py")
"""The browser tests (JupyterLab and Chromium each): one unit, so that two never run at once
on a small machine (a starved JupyterLab shows dialogs that take the test's clicks)."""
_LONG_FIRST = (
    # (unit of work pattern, rank): lower ranks are handed out first. Rough seconds on two
    # cores: the browser tests 170 in all, the side-by-side 7B pairs 90 (the fresh kernel's
    # first %pip installs everything), a variant pair 25, the model backend 40, a recipe's
    # deploy + inference 40, a scale notebook 30; everything else a few seconds per file.
    (re.compile(r"browser tests"), 0),
    (re.compile(r"recipe pair 7b"), 1),
    (re.compile(r"tests/test_variant_runs\.py"), 2),
    (re.compile(r"tests/test_model_backend\.py|tests/test_fresh_studio\.py"), 3),
    (re.compile(r"recipe (pair|scale) "), 4),
    (re.compile(r"tests/test_(preflight_notebook|weights|strict_rules|cleanup|demo_output|"
                r"fuzz_decoders|local_components|docs_commands|stop)\.py"), 5),
)


def xdist_scope(nodeid: str) -> str:
    """The unit of work a worker takes whole, for a test's node id.

    * ``recipe pair 7b``: the 7B TGI and LMI deploy and inference notebooks, run side by side
      (by ``SIDE_BY_SIDE_TEST``, or by nbval when that test is not collected), with
      ``test_notebook_runs.py``'s tests of those two recipes, which read what they did;
    * ``recipe pair 13b-tgi`` (and so on): the other recipes' deploy and inference notebooks
      (deploy first: inference restores what deploy stored) with their ``test_notebook_runs``;
    * ``recipe scale 7b-tgi`` (and so on): a scale notebook with its ``test_scale_notebook_runs``;
    * ``browser tests``: every browser test, one after the other;
    * a test of its own in ``_ONE_TEST_EACH``; otherwise the test's file.
    """
    path, _, rest = nodeid.partition("::")
    notebook_units, recipes_by_id = _recipe_names()
    if path in notebook_units:
        return notebook_units[path]
    if nodeid == SIDE_BY_SIDE_TEST:
        return "recipe pair 7b"
    recipe = recipes_by_id.get(rest.partition("[")[2].removesuffix("]"))
    if recipe and nodeid.startswith((_PAIR_RUNS, _SCALE_RUNS)):
        kind = "pair" if nodeid.startswith(_PAIR_RUNS) else "scale"
        return _recipe_unit(kind, *recipe)
    if _BROWSER.fullmatch(path):
        return "browser tests"
    if path in _ONE_TEST_EACH:
        return nodeid
    return path


def _recipe_unit(kind: str, container: str, size: str) -> str:
    if kind == "pair" and size == "7b":
        return "recipe pair 7b"  # both 7B recipes, side by side
    return f"recipe {kind} {recipe_id(container, size)}"


@functools.cache
def _recipe_names() -> tuple[dict[str, str], dict[str, tuple[str, str]]]:
    """The recipe notebooks' node-id paths (relative to the root) with their units, and the
    recipes by their test id (``7b-tgi``: the parameter of the recipe tests), from the
    generator's paths (``tests/recipe_notebooks.py``)."""
    units = {path.relative_to(ROOT).as_posix():
             _recipe_unit("scale" if notebook.kind == "scale" else "pair",
                          notebook.container, notebook.size)
             for path, notebook in recipe_notebooks(ROOT).items()}
    recipes = {recipe_id(n.container, n.size): (n.container, n.size)
               for n in recipe_notebooks(ROOT).values()}
    return units, recipes


def _rank(scope: str) -> int:
    return next((rank for pattern, rank in _LONG_FIRST if pattern.match(scope)),
                len(_LONG_FIRST))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto``: one worker more than the machine has CPUs. About a third of the suite's
    time is waiting -- on notebook kernels, JupyterLab, and the stand-in's simulated clock
    (a scale notebook sleeps through its scale-in) -- which a third worker fills on two
    cores (measured: 8 min 14 s with three workers, 10 min 1 s with two)."""
    return (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
            else os.cpu_count() or 1) + 1


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Hand out :func:`xdist_scope` units, in the order collected (longest first)."""
    from xdist.scheduler import LoadScopeScheduling

    class RecipeScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return xdist_scope(nodeid)

    config.option.loadscopereorder = False  # keep our order, not "most tests first"
    return RecipeScheduling(config, log)


def _longest_first(items: list[pytest.Item]) -> None:
    """Sort the items by their unit's rank, keeping the collected order within a rank (so a
    notebook's cells, deploy before inference, and a test after the run it reads)."""
    ranks = {id(item): _rank(xdist_scope(item.nodeid)) for item in items}
    items.sort(key=lambda item: ranks[id(item)])


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config,
                                  items: list[pytest.Item]) -> None:
    """Start the stand-in before nbval starts a kernel, if any notebook is collected, and give
    nbval the fresh Studio-like kernel (unless a kernel was chosen on the command line)."""
    _deselect_what_the_side_by_side_test_runs(config, items)
    _longest_first(items)
    if not config.option.collectonly and any(item.path.suffix == ".ipynb" for item in items):
        _ensure_stack()
        option = config.option
        if not (getattr(option, "nbval_kernel_name", None)
                or getattr(option, "nbval_current_env", False)):
            option.nbval_kernel_name = studio_kernel()


def _deselect_what_the_side_by_side_test_runs(config: pytest.Config,
                                               items: list[pytest.Item]) -> None:
    """The side-by-side test runs the 7B TGI and LMI pairs itself (both deploys, then both
    inference notebooks) and records them for later tests: when it is collected, nbval's
    runs of those four notebooks are deselected, so the suite runs them once."""
    if not any(item.nodeid == SIDE_BY_SIDE_TEST for item in items):
        return
    owned = {path.resolve() for path, notebook in recipe_notebooks(ROOT).items()
             if notebook.size == "7b" and notebook.kind in ("deploy", "inference")}
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


@pytest.fixture(scope="module")
def endpoint(local_stack: LocalStack) -> Iterator[str]:
    """A plain 7B TGI endpoint, InService in the stand-in, for one test module (deleted after
    it); its name."""
    from recipe_resources import deploy_endpoint

    import common

    sm, name = deploy_endpoint("aio")
    yield name
    common.delete_endpoint_resources(name, sagemaker_client=sm)


@pytest.fixture
def request_log(local_stack: LocalStack) -> Callable[[], list[dict[str, Any]]]:
    """A function returning the runtime requests received since this test began.

    The log itself is never cleared: later tests read what the notebooks sent.
    """
    start = len(local_stack.requests())
    return lambda: local_stack.requests()[start:]
