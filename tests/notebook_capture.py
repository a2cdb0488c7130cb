"""pytest plugin: keep the outputs of the notebooks nbval runs, for later tests to read.

nbval runs each code cell of a notebook as one test item (``IPyNbCell``) and keeps the cell's
outputs in ``item.test_outputs``; it never writes them anywhere. This plugin records them
after each cell, so that :func:`executed_notebook` can hand a test the notebook as it ran
(outputs included) without running it a second time. It must be registered from the
rootdir's ``conftest.py`` (``pytest_plugins = ["tests.notebook_capture"]``): nbval's items
live outside ``tests/``, where a ``tests/conftest.py`` hook would not see them.

With ``RECIPES_EXECUTED_DIR`` set, the executed notebooks are also written there at the end
of the session (for reading them in Jupyter after a CI run).
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
import pytest

__all__ = ["NotebookRun", "executed_notebook", "record_executed", "runs"]

EXECUTED_DIR_ENV = "RECIPES_EXECUTED_DIR"


@dataclass
class NotebookRun:
    """What nbval saw of one notebook: the outputs and the outcome of each code cell.

    Attributes:
        path: the notebook file.
        outputs: code-cell number (0-based, counting code cells only) -> its outputs.
        passed: code-cell number -> whether the cell ran without error.
    """

    path: Path
    outputs: dict[int, list[Any]] = field(default_factory=dict)
    passed: dict[int, bool] = field(default_factory=dict)

    def complete(self, code_cells: int) -> bool:
        """Whether every one of ``code_cells`` cells ran and passed."""
        return len(self.passed) == code_cells and all(self.passed.values())


_RUNS: dict[Path, NotebookRun] = {}


def runs() -> dict[Path, NotebookRun]:
    """Return the notebooks nbval has run so far in this session (resolved path -> run)."""
    return dict(_RUNS)


def executed_notebook(path: Path) -> nbformat.NotebookNode | None:
    """Return the notebook at ``path`` with nbval's outputs filled in.

    Returns:
        The notebook with each code cell's ``outputs`` as nbval captured them, or ``None``
        when nbval did not run every code cell of it in this session, or a cell failed.
    """
    run = _RUNS.get(Path(path).resolve())
    if run is None:
        return None
    notebook = nbformat.read(run.path, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    if not run.complete(len(code)):
        return None
    for number, cell in enumerate(code):
        cell.outputs = [nbformat.from_dict(copy.deepcopy(dict(out)))
                        for out in run.outputs[number]]
        for out in cell.outputs:
            if out.get("output_type") == "execute_result":
                out.setdefault("metadata", {})
                out["execution_count"] = number + 1
        cell.execution_count = number + 1
    return notebook


def record_executed(path: Path, notebook: nbformat.NotebookNode) -> None:
    """Record a notebook that a test ran itself (nbclient), as if nbval had run it.

    Later tests then read it with :func:`executed_notebook` instead of running it again; a
    cell with an ``error`` output counts as failed.
    """
    run = NotebookRun(Path(path).resolve())
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    for number, cell in enumerate(code):
        outputs = list(cell.get("outputs", []))
        run.outputs[number] = [copy.deepcopy(dict(out)) for out in outputs]
        run.passed[number] = not any(out.get("output_type") == "error" for out in outputs)
    _RUNS[run.path] = run


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Any:
    """Record an nbval cell's outputs and outcome after it ran."""
    outcome = yield
    if call.when != "call" or not hasattr(item, "cell_num") or not hasattr(item, "cell"):
        return
    path = Path(str(item.fspath)).resolve()
    run = _RUNS.setdefault(path, NotebookRun(path))
    run.outputs[item.cell_num] = list(getattr(item, "test_outputs", None) or [])
    run.passed[item.cell_num] = outcome.get_result().passed


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Write the executed notebooks to ``$RECIPES_EXECUTED_DIR`` when it is set."""
    target = os.environ.get(EXECUTED_DIR_ENV)
    if not target:
        return
    root = Path(str(session.config.rootpath))
    for path in _RUNS:
        notebook = executed_notebook(path)
        if notebook is None:
            continue
        relative = path.relative_to(root) if path.is_relative_to(root) else Path(path.name)
        out = Path(target) / relative
        out.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(notebook, out)
