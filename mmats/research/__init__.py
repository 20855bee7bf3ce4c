"""Research runs: run configs, metrics, sweeps, walk-forward and Monte Carlo."""
