"""``python -m data_tools`` behaves as the ``medseg-data`` console script."""

from __future__ import annotations

import sys

from data_tools.cli import main

if __name__ == "__main__":
    sys.exit(main())
