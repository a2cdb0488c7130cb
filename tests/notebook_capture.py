"""pytest plugin: keep the outputs of the notebooks nbval runs, for later tests to read.

nbval runs each code cell of a notebook as one test item (``IPyNbCell``) and keeps the cell's
outputs in ``item.test_outputs``; it never writes them anywhere. This plugin records them
after each cell, so that :func:`executed_notebook` can hand a test the notebook as it ran
(outputs included) without running it a second time. It must be registered from the
rootdir's ``conftest.py`` (``pytest_plugins = ["notebook_capture"]``): nbval's items
live outside ``tests/``, where a ``tests/conftest.py`` hook would not see them.

With ``RECIPES_EXECUTED_DIR`` set, the executed notebooks are also written there at the end
of the session (for reading them in Jupyter after a CI run).

The notebook tests' shared helpers live here too: :func:`execute_notebook` runs a notebook
with nbclient when nbval did not, and :func:`code_cell`, :func:`cell_stdout` and
:func:`request_body` read what a run printed and sent.
"""

from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
import pytest
from kernel_env import environment, studio_kernel

from common.local.stack import HEADLESS_NOTEBOOK_ENV

__all__ = ["NotebookRun", "cell_stdout", "code_cell", "execute_notebook", "executed_notebook",
           "record_executed", "request_body", "runs"]

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


def execute_notebook(path: Path, *, allow_errors: bool = False,
                     fresh: bool = False) -> nbformat.NotebookNode:
    """Run the notebook at ``path`` with nbclient, headless (``HEADLESS_NOTEBOOK_ENV``), in a
    Studio-like kernel without ``common`` (``fresh``: the SDK v2 and ipykernel only; see
    ``tests/kernel_env.py``), in the notebook's folder.

    Returns:
        The executed notebook, outputs included.

    Raises:
        nbclient.exceptions.CellExecutionError: a cell failed (unless ``allow_errors``).
    """
    from nbclient import NotebookClient

    notebook = nbformat.read(path, as_version=4)
    with environment(HEADLESS_NOTEBOOK_ENV):
        NotebookClient(notebook, timeout=600, kernel_name=studio_kernel(fresh=fresh),
                       allow_errors=allow_errors,
                       resources={"metadata": {"path": str(path.parent)}}).execute()
    return notebook


def code_cell(notebook: nbformat.NotebookNode, startswith: str) -> nbformat.NotebookNode:
    """Return the one code cell whose source starts with ``startswith``.

    Raises:
        ValueError: no such cell, or more than one.
    """
    (cell,) = [c for c in notebook.cells
               if c.cell_type == "code" and c.source.startswith(startswith)]
    return cell


def cell_stdout(cell: nbformat.NotebookNode) -> str:
    """Return what a code cell printed to stdout (its ``stream`` outputs named ``stdout``)."""
    return "".join(out.get("text", "") for out in cell.get("outputs", [])
                   if out.get("output_type") == "stream" and out.get("name") == "stdout")


def request_body(record: dict[str, Any]) -> dict[str, Any]:
    """Return the JSON body of one of the stand-in's request-log records, parsed."""
    body = record["body"]
    return json.loads(body) if isinstance(body, (bytes, str)) else body


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
