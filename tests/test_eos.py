"""The edge of stability, reproduced by the `experiment=eos_1d` preset (slow: ~3000 steps)."""
from __future__ import annotations

import numpy as np
import pytest

from neuroscope.rundir import read_metrics_csv

from .conftest import run_cli, single_run_dir


@pytest.mark.slow
def test_eos_1d_sharpness_rises_to_two_over_lr_and_hovers_there(tmp_path):
    proc = run_cli(["experiment=eos_1d", "viz.format=none", "progress=false"], tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    m = read_metrics_csv(single_run_dir(tmp_path) / "metrics.csv")
    edge = 2 / 0.1
    measured = np.isfinite(m["sharpness"])
    step, sharp, loss = m["step"][measured], m["sharpness"][measured], m["loss"]
    assert sharp[0] < 0.5 * edge  # starts well below 2/lr
    crossed = step[np.argmax(sharp >= 0.9 * edge)]
    assert sharp.max() >= 0.9 * edge and 100 < crossed < 1500  # reaches it
    late = (step >= crossed + 500)
    assert late.sum() > 100
    ratio = sharp[late] / edge
    assert np.all(np.abs(ratio - 1) <= 0.10), (ratio.min(), ratio.max())  # hovers within +-10%
    after = loss[int(crossed):]
    assert after[-1] < 0.5 * after[0]  # the loss keeps falling ...
    assert np.sum(np.diff(after) > 0) > 50  # ... non-monotonically
