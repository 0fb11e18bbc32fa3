"""Applications: each a thin function over a model that takes plain inputs and returns plain results."""
