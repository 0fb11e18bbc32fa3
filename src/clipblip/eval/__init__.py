"""Evaluation: the metrics of the `clipblip compare` report (metrics.py), as plain functions."""
