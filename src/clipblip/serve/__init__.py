"""The HTTP service (`clipblip serve`): FastAPI endpoints over a micro-batching model worker, and a web page."""

from ..extras import require

# The serve extra, checked on the package's import (the first thing `clipblip serve` does), so that a core install
# gets one line naming what to install rather than a traceback from inside app.py. python-multipart: FastAPI
# parses form uploads with it and says so only when the routes are defined.
require("fastapi", "serve", "clipblip serve")
require("uvicorn", "serve", "clipblip serve")
require("python_multipart", "serve", "clipblip serve")
