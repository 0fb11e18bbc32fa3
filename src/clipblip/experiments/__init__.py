"""Runs that train and evaluate: experiments above `train`, `eval` and `index`, which never import each other."""
