"""One palette for every picture NeuroScope draws: each quantity has one colour, the same in
the dashboard's panels and in the sweep figure."""
from __future__ import annotations

COLORS = {
    "prediction": "#1f77b4",  # the model: prediction and training loss share it
    "loss": "#1f77b4",
    "target": "#3a3a3a",
    "train_points": "#111111",
    "train_box": "#ff7f0e",  # in-box, like the test error
    "test_error": "#ff7f0e",
    "gen_error": "#9467bd",  # out-of-box
    "sharpness": "#2ca02c",
    "eos": "#d62728",  # the 2/lr line
    "projection": "#8c564b",
    "distance_to_flow": "#7f7f7f",  # GD's distance to its gradient-flow reference
    "now": "#666666",
    "diverged": "#d62728",
    "interrupted": "#e6a100",
}
TERM_COLORS = {"loss_data": "#17becf", "loss_l2": "#bcbd22", "loss_pde": "#e377c2", "loss_bc": "#7f7f7f"}
EXTRA_TERM_COLORS = ["#aec7e8", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94"]
LAMBDA_COLORS = ["#74c476", "#a1d99b", "#c7e9c0", "#bcdcb4"]
