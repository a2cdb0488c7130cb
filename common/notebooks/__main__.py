"""``python -m common.notebooks``: render the recipe notebooks, check them, or write a new pair.

    python -m common.notebooks render            # write the eighteen notebooks from the presets
    python -m common.notebooks render --check    # exit 1 listing notebooks that differ
    python -m common.notebooks new --model-id meta-llama/Llama-3.1-8B-Instruct \\
        --container tgi --out my-recipes/llama-3.1-8b     # reads the model, picks the rest
    python -m common.notebooks new --model-id ID --container both --out DIR  # a pair per
                                                 # container that serves the model
    python -m common.notebooks variants          # the table of what `new` picks per variant
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
    new_recipe,
    new_recipes,
    recipe_summary,
    render_all,
    write_notebooks,
    write_recipe,
)


def build_parser() -> argparse.ArgumentParser:
    """Return the command-line parser of ``python -m common.notebooks``."""
    parser = argparse.ArgumentParser(
        prog="python -m common.notebooks",
        description="Render the recipe notebooks from their templates.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    render = commands.add_parser("render", help="write (or --check) the eighteen recipe notebooks")
    render.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 and list the notebooks that differ")
    render.add_argument("--root", type=Path, default=REPO_ROOT,
                        help="the repository root (default: this checkout)")
    new = commands.add_parser("new", help="write a deploy/inference pair for another model")
    new.add_argument("--model-id", required=True, help="Hugging Face id, e.g. meta-llama/...")
    new.add_argument("--container", required=True, choices=(*CONTAINERS, "both"),
                     help="tgi or lmi: stop if its pinned version does not serve the model's "
                          "architecture (the message names the one that does); both: a pair "
                          "for each container that serves it")
    new.add_argument("--out", required=True, type=Path, help="the folder to write the pair to")
    new.add_argument("--instance-type", default=None,
                     help="override: this instance instead of the cheapest that fits")
    new.add_argument("--prompt-format", choices=PROMPT_FORMATS, default=None,
                     help="override: a built-in prompt builder instead of the model's own "
                          "chat template")
    new.add_argument("--max-total-tokens", type=int, default=None,
                     help="override: MAX_TOTAL_TOKENS / max_model_len instead of what the KV "
                          "cache holds")
    new.add_argument("--params-billion", type=float, default=None,
                     help="the parameter count, when the Hub cannot be read (with "
                          "--instance-type, --prompt-format and --max-total-tokens)")
    new.add_argument("--base-size", choices=SIZES, default=None,
                     help="override: start from this Llama 2 preset instead of the model's "
                          "facts (needs --instance-type and --prompt-format)")
    new.add_argument("--revision", default=None,
                     help="the model's branch, tag or commit: the facts are read there and the "
                          "deploy notebook pins it (TGI HF_MODEL_REVISION, LMI option.revision "
                          "or the weight copy)")
    variants = commands.add_parser(
        "variants", help="print what `new` picks for every variant of the catalogue "
                         "(common.variants)")
    variants.add_argument("--container", choices=CONTAINERS, default="tgi")
    return parser


def variants_table(container: str = "tgi") -> str:
    """Return a Markdown table of the instance and limits ``new`` picks for each variant of
    the catalogue (:mod:`common.variants`, which the stand-in's offline hub serves too), read
    with the real code from the files the catalogue describes, and the pinned containers that
    serve each."""
    from common.model_facts import model_facts_from_documents
    from common.sizing import size_deployment
    from common.support import serving_containers
    from common.variants import VARIANTS, variant_files

    rows = ["| model | instance | GPUs | weights | KV bytes/token | KV cache (tokens) | "
            "MAX_TOTAL_TOKENS | MAX_INPUT_TOKENS | served by |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for repo_id in VARIANTS:
        facts = model_facts_from_documents(repo_id, variant_files(repo_id) or {})
        sizing = size_deployment(facts, container)
        preset = sizing.preset
        served = ", ".join(c.upper() for c in serving_containers(facts)) or "neither"
        rows.append(
            f"| `{repo_id}` | {sizing.instance.name} | {sizing.instance.gpus} x "
            f"{sizing.instance.gpu_model} | {preset.weights_gib:.1f} GiB | "
            f"{facts.kv_bytes_per_token:,} ({facts.kv_bytes_per_token // 1024} KiB) | "
            f"{sizing.kv_cache_tokens:,} | {preset.max_total_tokens:,} | "
            f"{preset.max_input_tokens:,} | {served} |")
    return "\n".join(rows) + "\n"


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
    if args.command == "variants":
        out.write(variants_table(args.container))
        return 0
    skipped: list[str] = []
    try:
        if args.container == "both":
            if args.base_size is not None or args.params_billion is not None:
                raise ValueError("--container both reads the model from the Hub: leave out "
                                 "--base-size and --params-billion, or name one container")
            recipes, skipped = new_recipes(
                args.model_id, CONTAINERS, args.instance_type,
                prompt_format=args.prompt_format, max_total_tokens=args.max_total_tokens,
                revision=args.revision)
        else:
            recipes = [new_recipe(args.model_id, args.container, args.instance_type,
                                  prompt_format=args.prompt_format, base_size=args.base_size,
                                  params_billion=args.params_billion,
                                  max_total_tokens=args.max_total_tokens,
                                  revision=args.revision)]
    except (RecipeError, ValueError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    for recipe in recipes:
        out.write(recipe_summary(recipe))
        for path in write_recipe(recipe, args.out):
            out.write(f"wrote {path}\n")
    for reason in skipped:
        out.write(f"{reason}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
