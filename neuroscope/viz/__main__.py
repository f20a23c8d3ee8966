"""``python -m neuroscope.viz RUN_DIR [viz.KEY=VALUE ...]``: the ``neuroscope-render`` command."""
from .render import main

raise SystemExit(main())
