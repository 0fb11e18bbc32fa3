"""CLIP's byte-level BPE tokenizer on the `tokenizers` library, id-for-id equal to OpenAI's SimpleTokenizer.

OpenAI's tokenizer (also open_clip's) cleans a text in Python (ftfy, html unescape twice, whitespace collapse,
lowercase), splits it with one regex, maps each piece's UTF-8 bytes to printable characters, and runs BPE with a
`</w>` end-of-word suffix. Here the cleaning stays in Python (ftfy has no Rust twin) and the split, the byte mapping
and BPE run in Rust through `tokenizers`, batched.

Two places where a plain port would drift from OpenAI, and what is done about them:
- Oniguruma (the regex engine of `tokenizers`) disagrees with Python's `regex` module on `\\p{L}`/`\\p{N}` for code
  points assigned after its Unicode tables and under IGNORECASE (U+0345, multi-char folds such as U+FB06 "st").
  The split pattern is therefore handed to Oniguruma as explicit code-point sets computed by the installed `regex`
  module itself (`_split_pattern`), so both engines see the same classes.
- OpenAI turns "<|startoftext|>" / "<|endoftext|>" written inside a text into the special ids, but only where its
  regex matches them as a whole piece ("a<|endoftext|>" yes, "!<|endoftext|>" no: "!<|" is one punctuation run).
  Added tokens in `tokenizers` would match them anywhere, so the rare texts that contain one take a slow path that
  looks at the pieces of the same pre-tokenizer (`_ids_with_literals`).
"""

from __future__ import annotations

import functools
import gzip
import html
import itertools
import json
import re
from pathlib import Path
from typing import Iterable

import ftfy
import numpy as np
import regex
import torch
from tokenizers import Regex, Tokenizer, pre_tokenizers
from tokenizers.models import BPE

from clipblip.errors import ClipBlipError
from clipblip.text.checks import bytes_hint, check_length, check_texts, is_int

DEFAULT_VOCAB = Path(__file__).parent / "assets" / "bpe_simple_vocab_16e6.txt.gz"
SOT, EOT = "<|startoftext|>", "<|endoftext|>"
NUM_MERGES = 49152 - 256 - 2  # OpenAI keeps lines[1 : 49152-256-2+1] of the merges file
BPE_CACHE_WORDS = 1 << 17  # distinct words whose merges the Rust model remembers; captions reuse few words

# The pieces of OpenAI's split, in its order; it is compiled with re.IGNORECASE.
_CONTRACTIONS = ("'s", "'t", "'re", "'ve", "'m", "'ll", "'d")
_LETTERS, _DIGIT, _OTHER = r"[\p{L}]", r"[\p{N}]", r"[^\s\p{L}\p{N}]"

# Printable ASCII without '&', plus tab and newline: on such a text every ftfy fix and html.unescape is the
# identity (ftfy returns ASCII unchanged from its encoding fixer, unescapes only at '&', removes control characters
# and rewrites line breaks only outside this set, and NFC leaves ASCII alone), so the cleaning can skip them.
# tests/unit/test_clip_tokenizer.py checks that claim against ftfy itself.
_NOT_PLAIN_ASCII = re.compile(r"[^\t\n\x20-\x25\x27-\x7e]")


@functools.lru_cache(maxsize=None)
def bytes_to_unicode() -> dict[int, str]:
    """OpenAI's reversible byte -> printable character table (printable Latin-1 bytes map to themselves).

    The order matters: the first 256 vocab ids follow it (kept bytes first, then the moved ones), not byte order.
    """
    kept = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    moved = [b for b in range(256) if b not in kept]
    table = {b: chr(b) for b in kept}
    table.update({b: chr(256 + n) for n, b in enumerate(moved)})
    return table


def clean_text(text: str) -> str:
    """OpenAI's basic_clean + whitespace_clean + lower, skipping ftfy where it provably changes nothing."""
    if _NOT_PLAIN_ASCII.search(text) is not None:
        text = html.unescape(html.unescape(ftfy.fix_text(text)))
    # str.split and OpenAI's regex \s+ differ only on U+001C..U+001F, which ftfy removes and html.unescape never makes.
    return " ".join(text.split()).lower()


def _all_code_points() -> str:
    """Every code point except the surrogates, in order (Rust strings cannot hold surrogates)."""
    cps = np.arange(0x110000, dtype=np.uint32)
    cps = cps[(cps < 0xD800) | (cps >= 0xE000)]
    return cps.astype("<u4").tobytes().decode("utf-32-le")


def _char_class(members: Iterable[tuple[int, int]]) -> str:
    parts = (f"\\x{{{a:x}}}" if a == b else f"\\x{{{a:x}}}-\\x{{{b:x}}}" for a, b in members)
    return "[" + "".join(parts) + "]"


def _class_of(pattern: str, everything: str) -> str:
    """Oniguruma class listing exactly the code points that `regex` matches with one-char `pattern` (IGNORECASE)."""
    runs = regex.finditer(f"(?:{pattern})+", everything, flags=regex.IGNORECASE)
    return _char_class((ord(everything[m.start()]), ord(everything[m.end() - 1])) for m in runs)


@functools.lru_cache(maxsize=None)
def _split_pattern() -> str:
    """OpenAI's split regex, rewritten without properties or (?i) so Oniguruma matches it like `regex` does."""
    everything = _all_code_points()
    literals = [SOT, EOT, *_CONTRACTIONS]
    chars = sorted(set("".join(literals)))
    # The few code points that case-fold to a literal's characters (e.g. 'ſ' matches 's'), found in one scan.
    folds = regex.findall("[" + regex.escape("".join(chars)) + "]", everything, flags=regex.IGNORECASE)
    variants = {c: [f for f in folds if regex.fullmatch(regex.escape(c), f, flags=regex.IGNORECASE)] for c in chars}
    as_class = {c: _char_class((ord(f), ord(f)) for f in variants[c]) for c in chars}
    alternatives = ["".join(as_class[c] for c in lit) for lit in literals]
    alternatives += [_class_of(_LETTERS, everything) + "+", _class_of(_DIGIT, everything)]
    alternatives += [_class_of(_OTHER, everything) + "+"]
    return "|".join(alternatives)


def _read_merges(path: Path) -> list[tuple[str, str]]:
    try:
        text = (gzip.open(path).read() if path.suffix == ".gz" else path.read_bytes()).decode("utf-8")
    except (OSError, EOFError, UnicodeDecodeError) as err:
        raise ClipBlipError(f"cannot read the CLIP BPE merges file {path}: {err}; pass vocab_path=None for the "
                            "bundled bpe_simple_vocab_16e6.txt.gz or a path to a copy of it") from err
    lines = text.split("\n")[1 : NUM_MERGES + 1]
    merges = [tuple(line.split()) for line in lines]
    if len(merges) != NUM_MERGES or any(len(m) != 2 for m in merges):
        raise ClipBlipError(f"{path} is not a CLIP merges file (want a header line then {NUM_MERGES} lines of "
                            "'left right'); use OpenAI's bpe_simple_vocab_16e6.txt.gz")
    return merges


def build_vocab(merges: list[tuple[str, str]]) -> list[str]:
    """OpenAI's id order: 256 byte chars, the same with '</w>', one token per merge, then the two specials."""
    byte_chars = list(bytes_to_unicode().values())
    return [*byte_chars, *(c + "</w>" for c in byte_chars), *("".join(m) for m in merges), SOT, EOT]


def write_hf_vocab_files(directory: str | Path, vocab_path: str | Path | None = None) -> None:
    """vocab.json and merges.txt (the GPT-2/Hugging Face layout) for the same merges, e.g. for transformers."""
    merges = _read_merges(Path(vocab_path) if vocab_path is not None else DEFAULT_VOCAB)
    vocab = {t: i for i, t in enumerate(build_vocab(merges))}
    directory = Path(directory)
    (directory / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    lines = ["#version: 0.2", *(" ".join(m) for m in merges)]
    (directory / "merges.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")


@functools.lru_cache(maxsize=8)
def _backend(path: str) -> tuple[Tokenizer, tuple[str, ...]]:
    """The Rust tokenizer (split, byte map, BPE; no normalizer, no specials) and the id -> token table.

    Cached per merges file: building costs ~0.5 s, and the object is never mutated after this, so instances share it.
    """
    merges = _read_merges(Path(path))
    vocab = build_vocab(merges)
    model = BPE(vocab={t: i for i, t in enumerate(vocab)}, merges=merges, end_of_word_suffix="</w>",
                cache_capacity=BPE_CACHE_WORDS)
    tok = Tokenizer(model)
    split = pre_tokenizers.Split(Regex(_split_pattern()), behavior="removed", invert=True)
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [split, pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)])
    return tok, tuple(vocab)


def rust_tokenizer(vocab_path: str | Path | None = None) -> Tokenizer:
    """A copy of the Rust half that ClipTokenizer runs (split, byte map, BPE; no cleaning, no specials), to build
    on, e.g. the tokenizer.json of an ONNX export. A copy, because the cached one is shared and never mutated."""
    path = Path(vocab_path).resolve() if vocab_path is not None else DEFAULT_VOCAB
    return Tokenizer.from_str(_backend(str(path))[0].to_str())


class ClipTokenizer:
    """Texts -> [B, context_length] LongTensor of CLIP ids: sot, BPE ids, eot, then pad_id.

    Overlong texts are cut like OpenAI/open_clip: the first context_length - 1 ids (sot included), then eot.
    """

    def __init__(self, context_length: int = 77, pad_id: int = 0, vocab_path: str | Path | None = None):
        self._vocab_path = Path(vocab_path).resolve() if vocab_path is not None else DEFAULT_VOCAB
        self._tok, self._id_to_token = _backend(str(self._vocab_path))
        self.vocab_size = len(self._id_to_token)
        self.sot_id, self.eot_id = self.vocab_size - 2, self.vocab_size - 1
        self.context_length = check_length(context_length, "context_length", "sot and eot")
        if not is_int(pad_id) or not 0 <= pad_id < self.vocab_size:
            raise ClipBlipError(f"pad_id must be an int in [0, {self.vocab_size}); got {pad_id!r} "
                                f"(0 like OpenAI/open_clip, or {self.eot_id} like Hugging Face)")
        self.pad_id = int(pad_id)
        self._literal_ids = {SOT: self.sot_id, EOT: self.eot_id}
        self._byte_decoder = {c: b for b, c in bytes_to_unicode().items()}
        # encode_batch_fast (tokenizers >= 0.20) skips the offsets nobody here reads; the ids are the same.
        self._encode_batch = getattr(self._tok, "encode_batch_fast", self._tok.encode_batch)

    def __reduce__(self):
        # DataLoader workers get the three settings and rebuild from their own process cache, not 2 MB of JSON.
        return ClipTokenizer, (self.context_length, self.pad_id, self._vocab_path)

    def __call__(self, texts: str | list[str], context_length: int | None = None) -> torch.Tensor:
        """[B, context_length] int64; a single str gives B = 1."""
        length = (self.context_length if context_length is None
                  else check_length(context_length, "context_length", "sot and eot"))
        rows = [[self.sot_id, *ids[: length - 2], self.eot_id]
                for ids in self._ids_batch(check_texts(texts, "ClipTokenizer"))]
        lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
        flat = np.fromiter(itertools.chain.from_iterable(rows), dtype=np.int64, count=int(lengths.sum()))
        out = np.full((len(rows), length), self.pad_id, dtype=np.int64)
        # Boolean indexing visits cells row by row, left to right: the order of the concatenated rows.
        out[np.arange(length) < lengths[:, None]] = flat
        return torch.from_numpy(out)

    def encode(self, text: str) -> list[int]:
        """BPE ids of one text, without sot/eot and without truncation."""
        if not isinstance(text, str):
            raise ClipBlipError(f"encode takes one str; got {type(text).__name__}{bytes_hint(text)}")
        return self._ids_batch([text])[0]

    def decode(self, ids) -> str:
        """Text of one id sequence (list or 1-D tensor/array); drops sot/eot and the trailing pad_id run.

        Like OpenAI, '</w>' becomes a space and broken UTF-8 becomes U+FFFD; like Hugging Face, the ends are stripped.
        Only the trailing run of pad_id is padding: a row is [sot, ids, eot, pad...], and id 0 ('!') is also a token.
        """
        if isinstance(ids, (torch.Tensor, np.ndarray)):
            if ids.ndim != 1:
                raise ClipBlipError(f"decode takes one sequence of ids (1-D); got shape {tuple(ids.shape)}; "
                                    "decode the rows of a batch one by one")
            ids = ids.tolist()
        seq = [int(i) for i in ids]
        while seq and seq[-1] == self.pad_id:
            seq.pop()
        bad = [i for i in seq if not 0 <= i < self.vocab_size]
        if bad:
            raise ClipBlipError(f"cannot decode ids outside [0, {self.vocab_size}): {bad[:5]}; "
                                "pass ids produced by this tokenizer")
        text = "".join(self._id_to_token[i] for i in seq if i not in (self.sot_id, self.eot_id))
        data = bytearray(self._byte_decoder[c] for c in text)
        return data.decode("utf-8", errors="replace").replace("</w>", " ").strip()

    def _ids_batch(self, texts: list[str]) -> list[list[int]]:
        cleaned = [clean_text(t) for t in texts]
        ids = [e.ids for e in self._encode_batch(cleaned, add_special_tokens=False)]
        for i, text in enumerate(cleaned):
            if SOT in text or EOT in text:
                ids[i] = self._ids_with_literals(text)
        return ids

    def _ids_with_literals(self, text: str) -> list[int]:
        """Slow path: a piece that is exactly a special token's text is that special id, as in OpenAI's bpe cache."""
        ids = []
        for piece, _ in self._tok.pre_tokenizer.pre_tokenize_str(text):
            special = self._literal_ids.get(piece)  # the byte map leaves these ASCII pieces unchanged
            ids.extend([special] if special is not None else (t.id for t in self._tok.model.tokenize(piece)))
        return ids
