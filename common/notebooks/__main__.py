"""``python -m common.notebooks``: render the recipe notebooks, check them, or write a new pair.

    python -m common.notebooks render            # write the twelve notebooks from the presets
    python -m common.notebooks render --check    # exit 1 listing notebooks that differ
    python -m common.notebooks new --model-id codellama/CodeLlama-7b-Instruct-hf \\
        --container tgi --instance-type ml.g5.2xlarge --out my-recipes/codellama-7b
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from common.errors import RecipeError
from common.notebooks.generator import (
    CONTAINERS,
    PROMPT_FORMATS,
    REPO_ROOT,
    SIZES,
    check_notebooks,
    new_pair,
    render_all,
    write_notebooks,
)


def build_parser() -> argparse.ArgumentParser:
    """Return the command-line parser of ``python -m common.notebooks``."""
    parser = argparse.ArgumentParser(
        prog="python -m common.notebooks",
        description="Render the recipe notebooks from their templates.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    render = commands.add_parser("render", help="write (or --check) the twelve recipe notebooks")
    render.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 and list the notebooks that differ")
    render.add_argument("--root", type=Path, default=REPO_ROOT,
                        help="the repository root (default: this checkout)")
    new = commands.add_parser("new", help="write a deploy/inference pair for another model")
    new.add_argument("--model-id", required=True, help="Hugging Face id, e.g. meta-llama/...")
    new.add_argument("--container", required=True, choices=CONTAINERS)
    new.add_argument("--instance-type", required=True, help="e.g. ml.g5.2xlarge")
    new.add_argument("--out", required=True, type=Path, help="the folder to write the pair to")
    new.add_argument("--prompt-format", choices=PROMPT_FORMATS, default="llama2",
                     help="llama2 (Llama 2, Code Llama) or llama3 (default: llama2)")
    new.add_argument("--base-size", choices=SIZES, default="7b",
                     help="the Llama 2 preset to start from (default: 7b)")
    return parser


def main(argv: Sequence[str] | None = None, out=sys.stdout) -> int:
    """Run the command line; returns the exit status (1 when --check finds differences)."""
    args = build_parser().parse_args(argv)
    if args.command == "render":
        if args.check:
            differing = check_notebooks(args.root)
            for path in differing:
                out.write(f"differs: {path}\n")
            if differing:
                out.write("Run `python -m common.notebooks render` and commit the result.\n")
                return 1
            out.write("All recipe notebooks match their templates.\n")
            return 0
        written = write_notebooks(render_all(), args.root)
        for path in written:
            out.write(f"wrote {path}\n")
        out.write(f"{len(written)} notebook(s) written, the rest unchanged.\n")
        return 0
    try:
        paths = new_pair(args.model_id, args.container, args.instance_type, args.out,
                         prompt_format=args.prompt_format, base_size=args.base_size)
    except (RecipeError, ValueError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    for path in paths:
        out.write(f"wrote {path}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
