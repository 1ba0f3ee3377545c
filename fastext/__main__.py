"""``python -m fastext ...``: the same as the ``fastext`` console script."""

import sys

from .cli import main

sys.exit(main())
