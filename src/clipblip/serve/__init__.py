"""The HTTP service (`clipblip serve`): FastAPI endpoints over a micro-batching model worker, and a web page."""
