"""Config composition and every bad input the runner must refuse with one clear paragraph."""
from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from neuroscope import ConfigError, compose
from neuroscope.config import Activation, Config, CurvatureMethod, VideoFormat
from neuroscope.typed import to_config
from neuroscope.run import build_target, resolve_device

from .conftest import run_cli


def test_default_config_is_typed_and_valid():
    cfg = compose([])
    assert OmegaConf.get_type(cfg) is Config
    config = to_config(cfg)
    assert config.function.name == "sin" and config.loss.name == "mse" and config.model.name == "mlp"
    assert config.model.activation is Activation.tanh
    assert config.curvature.method is CurvatureMethod.lanczos
    assert config.viz.format is VideoFormat.mp4
    assert config.input_dim == 1 and config.lr > 0 and config.steps >= 1


def test_group_options_compose_with_their_values():
    config = to_config(compose(["function=sin_cos2d", "input_dim=2", "model.width=8", "model.activation=gelu", "loss=l1", "loss.l2_weight=0.01"]))
    assert config.function.name == "sin_cos2d" and config.function.input_dims == [2]
    assert config.model.width == 8 and config.model.activation is Activation.gelu
    assert config.loss.data_term.value == "l1" and config.loss.l2_weight == 0.01


@pytest.mark.parametrize("name", ["sin", "poly", "rbf"])
def test_sin_poly_rbf_work_in_1d_and_2d(name):
    import torch

    for dim in (1, 2):
        config = to_config(compose([f"function={name}", f"input_dim={dim}"]))
        y = build_target(config.function)(torch.rand(5, dim, dtype=torch.float64))
        assert y.shape == (5,) and torch.isfinite(y).all()


@pytest.mark.parametrize(
    "overrides, fragment",
    [
        (["function=nope"], "function=nope is not an option"),
        (["model.widht=3"], "Did you mean model.width"),
        (["lr=abc"], "could not be converted to Float"),
        (["model.activation=swish"], "expected one of [tanh, relu, gelu, silu, softplus"),
        (["viz.format=avi"], "expected one of [mp4, gif, none]"),
        (["device=gpu"], "choose one of auto, cpu, cuda"),
    ],
)
def test_compose_errors_name_the_bad_value_and_what_is_allowed(overrides, fragment):
    with pytest.raises(ConfigError) as e:
        compose(overrides)
    assert fragment in str(e.value)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    "overrides, fragment",
    [
        (["lr=0"], "lr=0.0 is not allowed"),
        (["lr=-0.1"], "lr=-0.1 is not allowed"),
        (["steps=0"], "steps=0 is not allowed"),
        (["data.n_train=0"], "data.n_train=0 is not allowed"),
        (["function=sin_cos2d"], "does not support input_dim=1"),
        (["data.test_range=[-1,1]"], "does not contain data.train_range"),
        (["data.train_range=[1,-1]"], "lo < hi"),
        (["curvature.every=-1"], "curvature.every=-1"),
    ],
)
def test_validation_errors_name_the_bad_value(overrides, fragment):
    with pytest.raises(ConfigError) as e:
        to_config(compose(overrides))
    assert fragment in str(e.value)


def test_cuda_without_a_gpu_is_a_clear_error():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ConfigError, match="device=cuda was asked for"):
        resolve_device(to_config(compose(["device=cuda"])).device)


def test_custom_target_that_cannot_be_imported_is_a_clear_error():
    with pytest.raises(ConfigError, match="function._target_='nowhere.fn' cannot be imported"):
        build_target(to_config(compose(["function._target_=nowhere.fn"])).function)


def test_custom_target_through_target_path_is_used(tmp_path, monkeypatch):
    (tmp_path / "my_targets.py").write_text("def bump(x, height=2.0):\n    return height * (x ** 2).sum(dim=1)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import torch

    config = to_config(compose(["function=custom", "function._target_=my_targets.bump", "+function.params.height=3.0"]))
    y = build_target(config.function)(torch.tensor([[2.0]], dtype=torch.float64).repeat(2, 1))
    assert torch.allclose(y, torch.tensor([12.0, 12.0], dtype=torch.float64))


def test_custom_function_without_a_target_is_a_clear_error():
    with pytest.raises(ConfigError, match="function._target_ must be given"):
        to_config(compose(["function=custom"]))


def test_custom_target_with_wrong_params_is_a_clear_error():
    with pytest.raises(ConfigError, match="does not accept function.params"):
        build_target(to_config(compose(["+function.params.nope=1"])).function)


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["function=nope"], "function=nope is not an option of the config group 'function'"),
        (["model.widht=3"], "Did you mean model.width?"),
        (["lr=-1"], "lr=-1.0 is not allowed"),
        (["-m", "lr=0.1,0"], "lr=0.0 is not allowed"),
        (["function._target_=nowhere.fn", "steps=2"], "cannot be imported"),
    ],
)
def test_cli_bad_input_exits_nonzero_with_one_paragraph_and_no_traceback(tmp_path, args, fragment):
    proc = run_cli(args, tmp_path, timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert fragment in out
    assert "Traceback" not in out

