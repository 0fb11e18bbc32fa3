"""Evaluation: `clipblip compare`, its measurements, claims and report (markdown, HTML and plots)."""

from ..extras import require

# The eval extra: matplotlib draws the report's plots and sacrebleu scores its captions, both at the end of a run
# that can take minutes; checked on the package's import (the first thing `clipblip compare` does) instead.
require("matplotlib", "eval", "clipblip compare")
require("sacrebleu", "eval", "clipblip compare")
