"""Pure training logic: run specs, data, one trial (TRL), the Optuna search, reports."""
