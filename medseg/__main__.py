"""``python -m medseg`` behaves as the ``medseg`` console script."""

from __future__ import annotations

import sys

from medseg.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
