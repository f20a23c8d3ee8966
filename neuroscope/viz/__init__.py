"""Pictures of runs and sweeps, drawn from run-folder files alone (no torch here)."""
