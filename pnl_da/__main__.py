"""``python -m pnl_da``: the same command line as ``pnl-da`` (what torchrun and launchers run)."""

import sys

from pnl_da.cli import main

sys.exit(main())
