"""Evaluation: metrics with confidence intervals, plots, and the run report."""
