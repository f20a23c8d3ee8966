"""Which configs train together as one ensemble (neuroscope.batching)."""
from __future__ import annotations

from neuroscope.batching import batch_key, group_by_key
from neuroscope.typed import to_config

from .conftest import fast_config


def typed(*overrides: str):
    return to_config(fast_config(*overrides))


def test_lr_seed_weights_and_viz_batch_but_shapes_terms_and_code_do_not():
    base = batch_key(typed())
    for same in (["lr=0.3"], ["seed=7"], ["loss.l2_weight=0"], ["data.noise=0.1"], ["viz.format=gif"], ["diverge_above=5"]):
        assert batch_key(typed(*same)) == base, same
    for other in (["model.width=32"], ["function=poly"], ["loss.l2_weight=0.01"], ["device.dtype=float64"],
                  ["curvature.k=2"], ["optimizer=heavy_ball"], ["steps=31"]):
        assert batch_key(typed(*other)) != base, other


def test_groups_keep_first_appearance_order_and_the_cap():
    configs = [typed("lr=0.1"), typed("model.width=8"), typed("lr=0.2"), typed("lr=0.3"), typed("model.width=8", "seed=1")]
    assert group_by_key(configs) == [[0, 2, 3], [1, 4]]
    assert group_by_key(configs, max_batch=2) == [[0, 2], [3], [1, 4]]


def test_one_run_features_make_a_group_of_one_each():
    from neuroscope.batching import solo_reason

    assert solo_reason(typed()) is None
    for solo, named in ((["curvature.terms=true"], "curvature.terms"), (["reference=flow"], "reference"),
                        (["viz.live=true"], "viz.live"), (["curvature.density.every=5"], "curvature.density.every")):
        a, b = typed(*solo), typed(*solo)
        assert named in solo_reason(a)
        assert batch_key(a) != batch_key(b)  # not even with an equal config
        assert group_by_key([a, typed(), b, typed("lr=0.2")]) == [[0], [1, 3], [2]]
