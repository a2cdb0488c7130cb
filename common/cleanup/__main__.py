"""``python -m common.cleanup``: list (and with ``--delete`` delete) what the recipes left."""

from common.cleanup import main

raise SystemExit(main())
