"""`python -m common.local demo`: run one recipe pair headless against the local stand-in.

Starts the stand-in (:class:`common.local.stack.LocalStack`), then executes the deploy
notebook and the inference notebook of one recipe with a real Jupyter kernel, exactly as a
reader would run them top to bottom, and echoes what the cells print into the terminal as it
arrives -- so the streamed answer appears token by token, followed by its metrics.

``--recipe scale`` runs the recipe's scale notebook instead, on a compressed clock
(:data:`SCALE_DEMO_STACK`): the capacity sweep, then copies rising under load and falling to
zero, one line per change, and at the end the stand-in's scaling timeline in simulated seconds.

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


SCALE_DEMO_STACK: dict[str, Any] = {
    # 60 simulated seconds pass per real second: the scale-in's 15 idle minutes take 15 s.
    "time_scale": 60.0,
    # Small copies, so that a few streams are "above the target" and copies rise quickly.
    "copy_concurrency": 4,
    "copy_ttft_s": 0.05,
    "copy_tokens_per_s": 200.0,
}
"""The stand-in's settings for ``demo --recipe scale`` (options given on the command line win)."""


def scale_notebook(container: str, size: str, root: Path = REPO_ROOT) -> Path:
    """Return the scale notebook's path of one recipe.

    Raises:
        DemoError: when it does not exist under ``root``.
    """
    from common.notebooks.generator import scale_path

    path = scale_path(container, size, root=root)
    if not path.exists():
        raise DemoError(f"{path} is missing. Render the notebooks with `python -m "
                        "common.notebooks render` from the repository root, then run the demo "
                        "again.")
    return path


def _alarm_label(name: str) -> str:
    """A short name for an alarm: target tracking's high/low alarm, or the name's last words."""
    for marker, label in (("-AlarmHigh-", "target-tracking high alarm"),
                          ("-AlarmLow-", "target-tracking low alarm")):
        if marker in name:
            return label
    return name.rsplit("-ic-", 1)[-1] + " alarm"


def scaling_timeline(events: list[dict[str, Any]]) -> list[str]:
    """Return the stand-in's scaling events as short lines, in simulated seconds from the first.

    Alarm evaluations are kept only when an alarm fires; "scaling" lines repeat the "copies"
    decisions, so they are left out; long reasons are cut at their parenthesis.
    """
    kept = [e for e in events
            if e.get("kind") in {"component", "copies", "instances"}
            or (e.get("kind") == "alarm" and str(e.get("message", "")).startswith("ALARM"))]
    if not kept:
        return []
    start = float(kept[0].get("time_s", 0.0))
    lines = []
    for event in kept:
        message = str(event.get("message", "")).split(" (Application Auto Scaling", 1)[0]
        if event.get("kind") == "alarm":
            message = f"{_alarm_label(str(event.get('resource', '')))}: {message.split(';')[0]}"
        lines.append(f"t+{float(event.get('time_s', 0.0)) - start:6.0f} s  "
                     f"{event.get('kind', ''):<9} {message}")
    return lines


def main(args: argparse.Namespace) -> int:
    """Run the demo with the parsed command-line ``args``; returns the exit status."""
    from common.local.components import logger as scaling_log
    from common.local.logfile import PROXY_LOGGER, BackgroundLog
    from common.local.stack import HEADLESS_NOTEBOOK_ENV, LocalStack

    scale = getattr(args, "recipe", "stream") == "scale"
    notebooks = ([scale_notebook(args.container, args.size)] if scale
                 else list(notebook_pair(args.container, args.size)))
    stack_options: dict[str, Any] = {"backend": args.backend}
    if scale:
        stack_options.update(SCALE_DEMO_STACK)
    for name in ("endpoint_delay_s", "ttft_s", "tokens_per_s", "time_scale", "copy_concurrency",
                 "copy_ttft_s", "copy_tokens_per_s"):
        value = getattr(args, name, None)
        if value is not None:
            stack_options[name] = value
    out = sys.stdout
    background = BackgroundLog(getattr(args, "log_file", None),
                               verbose=getattr(args, "verbose", False), command="demo",
                               loggers=(PROXY_LOGGER, scaling_log.name))
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
                 for p in notebooks]
        events = stack.scaling_events() if scale else []
    out.write("\nDemo finished:\n")
    for name, wall in walls:
        out.write(f"  {name}: {wall:.1f} s\n")
    if events:
        out.write("\nScaling timeline (simulated seconds, as the stand-in's clock counted "
                  "them):\n" + "\n".join(scaling_timeline(events)) + "\n")
    return 0
