"""`python -m common.local demo`: run one recipe pair headless against the local stand-in.

Starts the stand-in (:class:`common.local.stack.LocalStack`), then executes the deploy
notebook and the inference notebook of one recipe with a real Jupyter kernel, exactly as a
reader would run them top to bottom, and echoes what the cells print into the terminal as it
arrives -- so the streamed answer appears token by token, followed by its metrics.

The terminal shows only that story. The kernels' own output (transport warnings) and the
control plane proxy's access log go to a log file named in the banner
(:class:`common.local.logfile.BackgroundLog`); ``--verbose`` shows them in the terminal.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import IO, Any

from common.errors import RecipeError

REPO_ROOT = Path(__file__).resolve().parents[2]


class DemoError(RecipeError):
    """The demo could not run (missing notebook, missing Jupyter kernel, failed cell)."""


def notebook_pair(container: str, size: str, root: Path = REPO_ROOT) -> tuple[Path, Path]:
    """Return the (deploy, inference) notebook paths of one recipe.

    Raises:
        DemoError: when either notebook does not exist under ``root``.
    """
    from common.notebooks.generator import recipe_paths

    deploy, inference = recipe_paths(container, size, root=root)
    for path in (deploy, inference):
        if not path.exists():
            raise DemoError(
                f"{path} is missing. Render the notebooks with `python -m common.notebooks "
                "render` from the repository root, then run the demo again."
            )
    return deploy, inference


def _make_client(nb: Any, workdir: Path, out, timeout_s: float):
    """Build an nbclient client that echoes each cell's stream output as it arrives."""
    from nbclient import NotebookClient

    class EchoingClient(NotebookClient):
        def output(self, outs, msg, display_id, cell_index):  # called per output message
            content = msg.get("content", {})
            if msg.get("msg_type") == "stream":
                out.write(content.get("text", ""))
                out.flush()
            elif msg.get("msg_type") in {"execute_result", "display_data"}:
                text = content.get("data", {}).get("text/plain")
                if text and not text.startswith("<Figure"):
                    out.write(text + "\n")
                    out.flush()
            elif msg.get("msg_type") == "error":
                out.write("\n".join(content.get("traceback", [])) + "\n")
            return super().output(outs, msg, display_id, cell_index)

    return EchoingClient(
        nb,
        timeout=int(timeout_s),
        kernel_name="python3",
        resources={"metadata": {"path": str(workdir)}},
    )


def run_notebook(path: Path, *, out=sys.stdout, timeout_s: float = 900.0,
                 kernel_output: IO[str] | None = None) -> float:
    """Execute one notebook in a fresh kernel, echoing its printed output to ``out``.

    ``kernel_output`` receives the kernel process's own stdout and stderr (its log, not
    what the cells print); None leaves them on this process's terminal.

    Returns:
        The wall time in seconds.

    Raises:
        DemoError: when a cell fails (the cell's error is in the message).
    """
    import nbformat
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.read(path, as_version=4)
    started = time.perf_counter()
    out.write(f"\n=== {path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path} "
              "===\n")
    out.flush()
    client = _make_client(nb, path.parent, out, timeout_s)
    streams = {} if kernel_output is None else {"stdout": kernel_output,
                                                 "stderr": kernel_output}
    try:
        client.execute(**streams)
    except CellExecutionError as exc:
        raise DemoError(f"{path.name} failed: {exc}") from exc
    return time.perf_counter() - started


def main(args: argparse.Namespace) -> int:
    """Run the demo with the parsed command-line ``args``; returns the exit status."""
    from common.local.logfile import BackgroundLog
    from common.local.stack import HEADLESS_NOTEBOOK_ENV, LocalStack

    deploy, inference = notebook_pair(args.container, args.size)
    stack_options: dict[str, Any] = {"backend": args.backend}
    for name in ("endpoint_delay_s", "ttft_s", "tokens_per_s"):
        value = getattr(args, name, None)
        if value is not None:
            stack_options[name] = value
    out = sys.stdout
    background = BackgroundLog(getattr(args, "log_file", None),
                               verbose=getattr(args, "verbose", False), command="demo")
    with background, LocalStack(**stack_options) as stack:
        stack.apply_env()
        # Print in the terminal instead of drawing widgets, and let the notebook's guarded
        # clean-up cell run, since nothing real is deleted here.
        os.environ.update(HEADLESS_NOTEBOOK_ENV)
        out.write(f"Local SageMaker stand-in up ({stack.backend_label}).\n")
        out.write(background.describe() + "\n")
        out.flush()
        preload = getattr(stack.backend, "preload", None)
        if preload is not None:
            # Load the model now, so the first answer's time to first token is the model's
            # own and not the one-off load.
            preload()
        walls = [(p.name, run_notebook(p, out=out, kernel_output=background.kernel_output))
                 for p in (deploy, inference)]
    out.write("\nDemo finished:\n")
    for name, wall in walls:
        out.write(f"  {name}: {wall:.1f} s\n")
    return 0
