"""The one exception type a user can cause. Its message says what to do; the CLI prints it in one line."""


class ClipBlipError(Exception):
    """Bad input from the user: a path, an image, a checkpoint, a model name, a text."""
