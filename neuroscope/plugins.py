"""Making NeuroScope's Hydra plugin (``hydra/launcher=batched``, in hydra_plugins/neuroscope_batched)
visible to Hydra's plugin discovery in every kind of install.

Hydra 1.3 finds plugins by listing the ``hydra_plugins`` namespace package with
``pkgutil.walk_packages``. A wheel or a ``compat`` editable install puts the plugin in a real
folder that listing sees. The default editable install of setuptools >= 64 (``pip install -e .``)
serves it through an import hook instead: it can be imported, but not listed, so Hydra would
say "batched is not an option" (hydra#2359; Hydra 1.4 moves to entry points). Then the folder
that holds the plugin's source is appended to ``sys.path``, which is what a ``compat``
editable install does.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

PLUGIN = "hydra_plugins.neuroscope_batched"


def make_discoverable() -> None:
    """Before Hydra's first start in this process (its plugin scan is done once)."""
    try:
        spec = importlib.util.find_spec(PLUGIN)
        import hydra_plugins
    except ImportError:
        return
    if spec is None or not spec.submodule_search_locations:
        return
    folder = Path(list(spec.submodule_search_locations)[0])
    listed = {Path(p) for p in hydra_plugins.__path__ if Path(p).is_dir()}
    if folder.parent not in listed and folder.is_dir():
        sys.path.append(str(folder.parent.parent))
