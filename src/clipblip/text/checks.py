"""Input checks the tokenizers share: a user's bad input is a ClipBlipError that says what to pass instead."""

from __future__ import annotations

import numbers
import re

from ..errors import ClipBlipError

_SURROGATE = re.compile("[\ud800-\udfff]")


def is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_length(value, name: str, room: str) -> int:
    if not is_int(value) or value < 2:
        raise ClipBlipError(f"{name} must be an int >= 2 (room for {room}); got {value!r}")
    return int(value)


def bytes_hint(value) -> str:
    return "; decode bytes to str first" if isinstance(value, (bytes, bytearray)) else ""


def valid_unicode(text: str) -> str:
    """`text` with split UTF-16 pairs joined and every lone surrogate replaced by U+FFFD, as ftfy does for CLIP.

    Python gives a lone surrogate for an undecodable byte in argv or a file name ('\\udcff'); `tokenizers` passes
    text to Rust, whose strings cannot hold one, and raises a TypeError."""
    if _SURROGATE.search(text) is None:
        return text
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def check_texts(texts, owner: str) -> list[str]:
    """A str or a list/tuple of str, as a list of valid Unicode (`valid_unicode`)."""
    if isinstance(texts, str):
        return [valid_unicode(texts)]
    if not isinstance(texts, (list, tuple)):
        raise ClipBlipError(f"{owner} takes a str or a list of str; got {type(texts).__name__}{bytes_hint(texts)}")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise ClipBlipError(f"texts[{i}] is a {type(t).__name__}, not a str{bytes_hint(t)}")
    return [valid_unicode(t) for t in texts]
