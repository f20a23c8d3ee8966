"""NeuroScope's Hydra launcher plugin ``hydra/launcher=batched`` (found by Hydra's plugin
discovery in the ``hydra_plugins`` namespace package; the work is in neuroscope.sweep.batched)."""
