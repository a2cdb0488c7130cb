"""The variants the stand-in's offline hub serves: the product's catalogue, read as it is.

The catalogue is product data (:mod:`common.variants`), which ``python -m common.notebooks
variants`` reads too; the stand-in holds no facts of its own. :mod:`common.local.hub` writes
these repositories' files into its cache.
"""

from __future__ import annotations

from common.variants import VARIANTS, variant_files

__all__ = ["VARIANTS", "variant_files"]
