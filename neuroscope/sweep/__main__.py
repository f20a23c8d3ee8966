"""``python -m neuroscope.sweep SWEEP_DIR``: the ``neuroscope-summary`` command."""
import sys

from .callback import main

sys.exit(main())
