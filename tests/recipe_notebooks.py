"""The recipe notebooks by path: which recipe each belongs to, and which of its three it is.

``common.notebooks.generator`` owns the recipes' folder and file names (``recipe_paths``,
``scale_path``) and their :class:`~common.notebooks.generator.Recipe` (slug, container,
preset). Tests and the root ``conftest.py`` look a notebook up here instead of parsing its
path, and name a recipe in test ids with :func:`recipe_id`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from common.notebooks import generator

__all__ = ["KINDS", "ROOT", "RecipeNotebook", "recipe_id", "recipe_notebooks", "recipe_of"]

ROOT = Path(__file__).resolve().parents[1]
KINDS = ("deploy", "inference", "scale")
"""A recipe's three notebooks, in the order they run."""


@dataclass(frozen=True)
class RecipeNotebook:
    """One recipe notebook: its recipe (``container``, ``size``) and its ``kind`` (KINDS)."""

    container: str
    size: str
    kind: str


def recipe_id(container: str, size: str) -> str:
    """Return a recipe's id in test names, e.g. ``7b-tgi``."""
    return f"{size}-{container}"


@functools.cache
def recipe_notebooks(root: Path = ROOT) -> dict[Path, RecipeNotebook]:
    """Return every recipe notebook under ``root`` (the generator's paths) with its recipe
    and kind, in ``generator.RECIPES`` order."""
    found = {}
    for container, size in generator.RECIPES:
        deploy, inference = generator.recipe_paths(container, size, root=root)
        scale = generator.scale_path(container, size, root=root)
        for kind, path in zip(KINDS, (deploy, inference, scale), strict=True):
            found[path] = RecipeNotebook(container, size, kind)
    return found


@functools.cache
def recipe_of(path: Path) -> generator.Recipe:
    """Return the generator's :class:`~common.notebooks.generator.Recipe` of the recipe
    notebook at ``path`` (under :data:`ROOT`).

    Raises:
        KeyError: ``path`` is not one of the recipe notebooks.
    """
    notebook = recipe_notebooks()[path]
    return generator.recipe_for(notebook.container, notebook.size)
