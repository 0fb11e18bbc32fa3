"""Word-level tokenizers for closed vocabularies (the Shapes world): one id per word, on the `tokenizers` library.

A model trained on a small closed language does not need 49k BPE or 30k WordPiece rows in its embedding and
output layers: with a vocabulary of ~100 words the shipped tiny models are a few MB and the LM softmax is ~300x
cheaper. The vocabulary is a config field (saved in config.json), so a checkpoint stays self-contained.

Texts are lowercased, split into words and single punctuation marks (`\\w+|[^\\w\\s]`); a word
outside the vocabulary becomes [UNK]. The special ids come first, in a fixed order per family (`CLIP_SPECIALS`,
`BERT_SPECIALS`), so the config's special-token ids follow from the vocabulary (`clip_ids`, `bert_ids`).
The two classes have the call signatures of ClipTokenizer and BlipTokenizer, so every task works unchanged.

A closed vocabulary says when it is out of its depth: a text with words outside it gives a VocabularyWarning that
names the text and those words (each unknown word once per tokenizer, with the first text that holds it; after
20 such warnings one more says it stops), or a ClipBlipError when `strict` is set. `owner` names the model in the
message (`clipblip.load` sets both).
"""

from __future__ import annotations

import functools
import re
import sys
import warnings

import numpy as np
import torch
from tokenizers import Regex, Tokenizer, normalizers, pre_tokenizers
from tokenizers.models import WordLevel

from clipblip.errors import ClipBlipError, VocabularyWarning
from clipblip.text.checks import check_length, check_texts

CLIP_SPECIALS = ("<pad>", "<unk>", "<sot>", "<eot>")
BERT_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[DEC]", "[ENC]")
_NO_SPACE_BEFORE = re.compile(r" ([.,?!;:])")
# Vocabulary warnings one tokenizer gives before a last one says that it stops: a Shapes model run over a real
# dataset would otherwise print a line for every new word in it.
_MAX_WARNINGS = 20


def clip_ids(vocab) -> dict:
    """TextConfig fields for a word vocabulary (CLIP_SPECIALS first)."""
    return {"vocab_size": len(vocab), "pad_id": 0, "sot_id": 2, "eot_id": 3}


def bert_ids(vocab) -> dict:
    """BertConfig fields for a word vocabulary (BERT_SPECIALS first)."""
    return {"vocab_size": len(vocab), "pad_id": 0, "cls_id": 2, "sep_id": 3, "dec_id": 4, "enc_id": 5}


def full_vocab(words, specials) -> tuple[str, ...]:
    """specials + the distinct lowercase words, sorted (a stable id for each word)."""
    words = sorted({w.lower() for w in words} - set(specials))
    return tuple(specials) + tuple(words)


@functools.lru_cache(maxsize=16)
def _backend(vocab: tuple[str, ...], unk: str) -> Tokenizer:
    if len(set(vocab)) != len(vocab):
        raise ClipBlipError("the word vocabulary has duplicate entries")
    tok = Tokenizer(WordLevel({w: i for i, w in enumerate(vocab)}, unk_token=unk))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    # words, and each punctuation mark on its own: `tokenizers`' Whitespace keeps a run such as ".," together, so
    # a generated "hexagon . ," decoded to "hexagon.," would read back as one unknown word
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"\w+|[^\w\s]"), behavior="removed", invert=True)
    return tok


def _short(text: str, limit: int = 80) -> str:
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


def _words_listed(words: list[str], limit: int = 10) -> str:
    more = f" and {len(words) - limit} more" if len(words) > limit else ""
    return ", ".join(repr(w) for w in words[:limit]) + more


def _outside_clipblip() -> int:
    """warnings.warn's stacklevel that points at the first caller outside clipblip: the user's line.

    Python 3.11 has no skip_file_prefixes; between the user and the tokenizer are tasks, the model and torch's
    no_grad wrappers around them."""
    level, frame = 1, sys._getframe(1)
    while frame is not None and (frame.f_globals.get("__name__", "").partition(".")[0] == "clipblip"
                                 or frame.f_globals.get("__name__") == "torch.utils._contextlib"):
        level, frame = level + 1, frame.f_back
    return level


class _Words:
    unk_id = 1  # the second special in both families

    def __init__(self, vocab, specials: tuple[str, ...], length: int):
        vocab = tuple(vocab)
        if vocab[: len(specials)] != specials:
            raise ClipBlipError(f"a word vocabulary must start with {specials}; got {vocab[: len(specials)]}")
        self.vocab, self.vocab_size = vocab, len(vocab)
        self._tok = _backend(vocab, specials[1])
        self._specials = set(range(len(specials)))
        self.length = length
        self.owner, self.strict = "the model", False
        self._reported: set[str] = set()
        self._warnings = 0

    def _state(self) -> dict:
        return {"owner": self.owner, "strict": self.strict}

    def encode(self, text: str) -> list[int]:
        texts = check_texts(text, type(self).__name__)
        encoded = [self._tok.encode(texts[0], add_special_tokens=False)]
        self._check_vocabulary(texts, encoded)
        return encoded[0].ids

    def unknown_words(self, text: str) -> list[str]:
        """The words of `text` outside the vocabulary, lowercased and split as the tokenizer reads them."""
        normal = self._tok.normalizer.normalize_str(check_texts(text, type(self).__name__)[0])
        return [w for w, _ in self._tok.pre_tokenizer.pre_tokenize_str(normal) if self._tok.token_to_id(w) is None]

    def _check_vocabulary(self, texts: list[str], encoded) -> None:
        """Warn about (or, when strict, refuse) each text with an unknown word; silent for the known ones."""
        if self._warnings > _MAX_WARNINGS and not self.strict:
            return
        for text, enc in zip(texts, encoded):
            words = self.unknown_words(text) if self.unk_id in enc.ids else []
            if not words:
                continue
            where = f"{_short(text)} has words outside {self.owner}'s vocabulary ({self.vocab_size} words)"
            if self.strict:
                raise ClipBlipError(f"{where}: {_words_listed(words)}; rephrase it with words the model knows, "
                                    "or load a model with an open vocabulary")
            if self._reported.issuperset(words) or self._warnings > _MAX_WARNINGS:
                continue  # its words were reported with an earlier text (a classifier's templates repeat them)
            self._reported.update(words)
            self._warnings += 1
            message = (f"{where}, read as unknown: {_words_listed(words)}" if self._warnings <= _MAX_WARNINGS else
                       f"more texts have words outside {self.owner}'s vocabulary; they are not reported one by one")
            warnings.warn(message, VocabularyWarning, stacklevel=_outside_clipblip())

    def _rows(self, texts, first: int, last: int, length: int) -> list[list[int]]:
        texts = check_texts(texts, type(self).__name__)
        encoded = self._tok.encode_batch(texts, add_special_tokens=False)
        self._check_vocabulary(texts, encoded)
        return [[first, *e.ids[: length - 2], last] for e in encoded]

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        seq = ids.tolist() if isinstance(ids, (torch.Tensor, np.ndarray)) else list(ids)
        bad = [i for i in seq if not 0 <= int(i) < self.vocab_size]
        if bad:
            raise ClipBlipError(f"cannot decode ids outside [0, {self.vocab_size}): {bad[:5]}")
        words = [self.vocab[int(i)] for i in seq if not (skip_special_tokens and int(i) in self._specials)]
        return _NO_SPACE_BEFORE.sub(r"\1", " ".join(words))

    def batch_decode(self, rows, skip_special_tokens: bool = True) -> list[str]:
        return [self.decode(r, skip_special_tokens) for r in rows]


class ClipWordTokenizer(_Words):
    """ClipTokenizer's interface: [B, context_length] ids, <sot> words <eot> then <pad>."""

    def __init__(self, vocab, context_length: int = 32):
        super().__init__(vocab, CLIP_SPECIALS, check_length(context_length, "context_length", "sot and eot"))
        self.context_length, self.pad_id, self.sot_id, self.eot_id = self.length, 0, 2, 3

    def __reduce__(self):
        return ClipWordTokenizer, (self.vocab, self.context_length), self._state()

    def __call__(self, texts, context_length: int | None = None) -> torch.Tensor:
        length = context_length or self.context_length
        rows = self._rows(texts, self.sot_id, self.eot_id, length)
        out = torch.full((len(rows), length), self.pad_id, dtype=torch.long)
        for i, row in enumerate(rows):
            out[i, : len(row)] = torch.tensor(row)
        return out


class BlipWordTokenizer(_Words):
    """BlipTokenizer's interface: (ids, mask) [B, L], [first] words [SEP] then [PAD]; L is the longest row, or
    max_length for every batch with `pad_to_max=True` (fixed shapes, as distributed training gathers them)."""

    pad_id, unk_id, cls_id, sep_id, dec_id, enc_id = range(6)

    def __init__(self, vocab, max_length: int = 32):
        super().__init__(vocab, BERT_SPECIALS, check_length(max_length, "max_length", "the first token and [SEP]"))
        self.max_length = self.length
        self._first_ids = {"cls": self.cls_id, "enc": self.enc_id, "dec": self.dec_id}

    def __reduce__(self):
        return BlipWordTokenizer, (self.vocab, self.max_length), self._state()

    def __call__(self, texts, max_length: int | None = None, first: str = "cls", pad_to_max: bool = False):
        length = max_length or self.max_length
        if first not in self._first_ids:
            raise ClipBlipError(f"first must be 'cls' (text encoder), 'enc' (ITM) or 'dec' (decoder); got {first!r}")
        rows = self._rows(texts, self._first_ids[first], self.sep_id, length)
        width = length if pad_to_max else max((len(r) for r in rows), default=0)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row)
        return ids, (ids != self.pad_id).long()
