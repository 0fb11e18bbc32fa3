"""The one exception type a user can cause, and the warnings clipblip gives. A message says what to do; the CLI
prints it in one line."""


class ClipBlipError(Exception):
    """Bad input from the user: a path, an image, a checkpoint, a model name, a text."""


class ClipBlipWarning(UserWarning):
    """Something a user should know that does not stop the work (the CLI prints it as one `warning:` line)."""


class VocabularyWarning(ClipBlipWarning):
    """A text has words outside a closed vocabulary (a word-level model such as shapes-clip): they read as unknown."""
