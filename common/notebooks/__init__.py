"""Templates and the generator that render every recipe notebook.

``python -m common.notebooks render`` writes the eighteen Llama 2 recipe notebooks from the
presets; ``python -m common.notebooks render --check`` lists the committed notebooks that
differ from what the templates render; ``python -m common.notebooks new ...`` writes a
deploy/inference pair for another Llama variant. See :mod:`common.notebooks.generator`.
"""

from __future__ import annotations

from common.notebooks.generator import (
    CONTAINERS,
    PROMPT_FORMATS,
    RECIPES,
    SIZES,
    Recipe,
    check_notebooks,
    new_pair,
    new_recipe,
    new_recipes,
    notebook_text,
    recipe_for,
    recipe_from_facts,
    recipe_paths,
    recipe_summary,
    render_all,
    render_notebook,
    render_recipe,
    write_notebooks,
    write_recipe,
)

__all__ = [
    "CONTAINERS",
    "PROMPT_FORMATS",
    "RECIPES",
    "SIZES",
    "Recipe",
    "check_notebooks",
    "new_pair",
    "new_recipe",
    "new_recipes",
    "notebook_text",
    "recipe_for",
    "recipe_from_facts",
    "recipe_paths",
    "recipe_summary",
    "render_all",
    "render_notebook",
    "render_recipe",
    "write_notebooks",
    "write_recipe",
]
