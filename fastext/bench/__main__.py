"""``python -m fastext.bench``: see :func:`fastext.bench.main`."""

import sys

from . import main

sys.exit(main())
