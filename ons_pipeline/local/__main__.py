"""``python -m ons_pipeline.local``: the same as the ``ons-stack`` console script."""

from __future__ import annotations

import sys

from ons_pipeline.local.cli import main

sys.exit(main())
