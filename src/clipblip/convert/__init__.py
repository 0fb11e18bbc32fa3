"""Converters: one file per foreign layout, each a pure state_dict -> state_dict function."""
