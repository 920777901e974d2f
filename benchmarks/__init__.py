"""Measurements printed as ratios taken in one run: `python -m benchmarks.<name>`."""
