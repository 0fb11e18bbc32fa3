"""BLIP's text tokenizer: BERT uncased WordPiece plus BLIP's two added tokens, on the `tokenizers` library.

BLIP (`models/blip.py` `init_tokenizer`) takes `BertTokenizer.from_pretrained('bert-base-uncased')` and adds
`[DEC]` as bos_token (id 30522) and `[ENC]` as an additional special token (id 30523); Hugging Face's
`Salesforce/blip-*` tokenizers carry the same ids. Every row is `[first] wordpieces [SEP]`, where BLIP overwrites the
first id: [CLS] for the unimodal text encoder (ITC), [ENC] for the image-grounded encoder (ITM), [DEC] for the
decoder (captioning, VQA answers).

The pipeline is Hugging Face's, id for id: BertNormalizer (clean_text, Chinese characters spaced out, accents
stripped, lowercase), BertPreTokenizer (whitespace and every punctuation character split off), WordPiece with '##'
and [UNK] for a word longer than 100 characters or with no split into known pieces. BLIP itself ran the pure-Python
BertTokenizer of transformers 4.15, which agrees with this id for id except on a word-final capital sigma: Python's
str.lower() gives it the final form ("ΣΟΦΟΣ" -> "σοφος"), the Rust normalizer lowercases char by char ("σοφοσ").
We follow Rust, as Hugging Face's BLIP tokenizer does. decode applies clean_up_tokenization as 4.15 did by default
(transformers 5 no longer does unless asked), so captions read "a dog's toy." and not "a dog ' s toy.".

Special-token text written inside a user's text: Hugging Face (the `tokenizers`-backed BertTokenizer of
transformers 5 and the pure-Python one BLIP ran, tested here as BertTokenizerLegacy, alike) matches the exact,
case-sensitive strings "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", "[ENC]" anywhere in the raw text,
before normalization, and emits their ids ("x[SEP]y" -> x, 102, y; "[sep]" is the plain pieces '[', 'sep', ']').
We keep that, because the checkpoints were trained with it and parity with transformers is tested; callers who feed
untrusted text into ITM or the decoder should know that a literal "[SEP]" ends the sentence as far as the model can
tell.
"""

from __future__ import annotations

import functools
import itertools
import warnings
from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers
from tokenizers.models import WordPiece

from clipblip.errors import ClipBlipError
from clipblip.text.checks import bytes_hint, check_length, check_texts, is_int, valid_unicode

DEFAULT_VOCAB = Path(__file__).parent / "assets" / "bert-base-uncased-vocab.txt"
BERT_VOCAB_SIZE = 30522
# The vocab's own specials at BERT's ids, then BLIP's two additions, which take the next free ids in this order.
_VOCAB_SPECIALS = {"[PAD]": 0, "[UNK]": 100, "[CLS]": 101, "[SEP]": 102, "[MASK]": 103}
_ADDED_SPECIALS = ("[DEC]", "[ENC]")


@functools.lru_cache(maxsize=8)
def _backend(path: str) -> Tokenizer:
    """The Rust tokenizer (normalizer, pre-tokenizer, WordPiece, decoder, the 7 specials; no post-processor).

    Cached per vocab file: building costs ~50 ms and the object is never mutated after this, so instances share it.
    """
    try:
        vocab = WordPiece.read_file(path)
    except Exception as err:  # the Rust reader raises a bare Exception for a missing or non-UTF-8 file
        raise ClipBlipError(f"cannot read the BERT vocab file {path}: {err}; pass vocab_path=None for the bundled "
                            "bert-base-uncased-vocab.txt or a path to a copy of it") from err
    wrong = {t: vocab.get(t) for t, i in _VOCAB_SPECIALS.items() if vocab.get(t) != i}
    if len(vocab) != BERT_VOCAB_SIZE or wrong or any(t in vocab for t in _ADDED_SPECIALS):
        raise ClipBlipError(f"{path} is not the bert-base-uncased vocab BLIP uses (want {BERT_VOCAB_SIZE} distinct "
                            f"tokens with {_VOCAB_SPECIALS}; got {len(vocab)} tokens, mismatched {wrong}); "
                            "pass vocab_path=None for the bundled copy")
    tok = Tokenizer(WordPiece(vocab, unk_token="[UNK]", continuing_subword_prefix="##", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=True,
                                                lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    # cleanup=True drops the space before a token that is exactly '.', ',', '?' or '!' (as HF's Bert decoder does).
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    # As strings these become AddedToken(special=True, normalized=False): matched in the raw text, like HF.
    tok.add_special_tokens([*_VOCAB_SPECIALS, *_ADDED_SPECIALS])
    return tok


def rust_tokenizer(vocab_path: str | Path | None = None) -> Tokenizer:
    """A copy of the Rust pipeline that BlipTokenizer runs (normalizer, pre-tokenizer, WordPiece, decoder, the 7
    specials; no post-processor), to build on, e.g. the tokenizer.json of an ONNX export. A copy, because the cached
    one is shared and never mutated."""
    path = Path(vocab_path).resolve() if vocab_path is not None else DEFAULT_VOCAB
    return Tokenizer.from_str(_backend(str(path)).to_str())


def clean_up_tokenization(text: str) -> str:
    """Hugging Face's clean_up_tokenization, which BLIP's decode applied (transformers 4.15 default)."""
    return (text.replace(" .", ".").replace(" ?", "?").replace(" !", "!").replace(" ,", ",").replace(" ' ", "'")
            .replace(" n't", "n't").replace(" 'm", "'m").replace(" 's", "'s").replace(" 've", "'ve")
            .replace(" 're", "'re"))


class BlipTokenizer:
    """Texts -> (ids [B, L], attention_mask [B, L]) int64, each row [first] wordpieces [SEP] then [PAD] up to L.

    L is the longest row of the batch (HF padding='longest'); a row longer than max_length keeps its first
    max_length - 2 wordpieces and the final [SEP] (HF truncation=True), with one warning per call.
    """

    pad_id, unk_id, cls_id, sep_id, mask_id = 0, 100, 101, 102, 103
    dec_id, enc_id = 30522, 30523
    vocab_size = 30524

    def __init__(self, max_length: int = 35, vocab_path: str | Path | None = None):
        self._vocab_path = Path(vocab_path).resolve() if vocab_path is not None else DEFAULT_VOCAB
        self._tok = _backend(str(self._vocab_path))
        self.max_length = check_length(max_length, "max_length", "the first token and [SEP]")
        self._first_ids = {"cls": self.cls_id, "enc": self.enc_id, "dec": self.dec_id}
        # encode_batch_fast (tokenizers >= 0.20) skips the offsets nobody here reads; the ids are the same.
        self._encode_batch = getattr(self._tok, "encode_batch_fast", self._tok.encode_batch)

    def __reduce__(self):
        # DataLoader workers get the two settings and rebuild from their own process cache, not 700 KB of vocab.
        return BlipTokenizer, (self.max_length, self._vocab_path)

    def __call__(self, texts: str | list[str], max_length: int | None = None,
                 first: str = "cls", pad_to_max: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """(ids, attention_mask), both [B, L] int64; a single str gives B = 1. L is the longest row, or max_length
        with `pad_to_max` (fixed shapes, as distributed training gathers them)."""
        length = (self.max_length if max_length is None
                  else check_length(max_length, "max_length", "the first token and [SEP]"))
        first_id = self._first_ids.get(first) if isinstance(first, str) else None
        if first_id is None:
            raise ClipBlipError(f"first must be 'cls' (text encoder), 'enc' (ITM) or 'dec' (decoder); got {first!r}")
        pieces = self._ids_batch(check_texts(texts, "BlipTokenizer"))
        cut = sum(len(ids) > length - 2 for ids in pieces)
        if cut:
            warnings.warn(f"{cut} of {len(pieces)} texts had more than max_length={length} tokens and were truncated "
                          f"to their first {length - 2} wordpieces plus [{first.upper()}] and [SEP]", stacklevel=2)
        rows = [[first_id, *ids[: length - 2], self.sep_id] for ids in pieces]
        lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
        width = length if pad_to_max else int(lengths.max()) if len(rows) else 0
        flat = np.fromiter(itertools.chain.from_iterable(rows), dtype=np.int64, count=int(lengths.sum()))
        mask = np.arange(width) < lengths[:, None]
        out = np.full((len(rows), width), self.pad_id, dtype=np.int64)
        # Boolean indexing visits cells row by row, left to right: the order of the concatenated rows.
        out[mask] = flat
        return torch.from_numpy(out), torch.from_numpy(mask.astype(np.int64))

    def encode(self, text: str) -> list[int]:
        """Wordpiece ids of one text, without [CLS]/[SEP] and without truncation."""
        if not isinstance(text, str):
            raise ClipBlipError(f"encode takes one str; got {type(text).__name__}{bytes_hint(text)}")
        return self._ids_batch([valid_unicode(text)])[0]

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        """Text of one id sequence (list or 1-D tensor/array), as HF's BertTokenizer.decode with cleanup on.

        '##' pieces join their word, other pieces are space-separated, and HF's clean_up_tokenization (" ." -> ".",
        " ' " -> "'", " n't" -> "n't", ...) runs as it did on BLIP's captions. skip_special_tokens drops all seven
        specials: [PAD] [UNK] [CLS] [SEP] [MASK] [DEC] [ENC].
        """
        seq = _check_ids(ids, self.vocab_size)
        return clean_up_tokenization(self._tok.decode(seq, skip_special_tokens=bool(skip_special_tokens)))

    def batch_decode(self, rows, skip_special_tokens: bool = True) -> list[str]:
        """decode of each row of a 2-D tensor/array or a list of id sequences."""
        if isinstance(rows, (torch.Tensor, np.ndarray)):
            if rows.ndim != 2:
                raise ClipBlipError(f"batch_decode takes a 2-D batch of ids; got shape {tuple(rows.shape)}")
            rows = rows.tolist()
        seqs = [_check_ids(r, self.vocab_size) for r in rows]
        texts = self._tok.decode_batch(seqs, skip_special_tokens=bool(skip_special_tokens))
        return [clean_up_tokenization(t) for t in texts]

    def _ids_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self._encode_batch(texts, add_special_tokens=False)]


def _check_ids(ids, vocab_size: int) -> list[int]:
    if isinstance(ids, (torch.Tensor, np.ndarray)):
        if ids.ndim != 1:
            raise ClipBlipError(f"decode takes one sequence of ids (1-D); got shape {tuple(ids.shape)}; "
                                "use batch_decode for a batch")
        ids = ids.tolist()
    if isinstance(ids, (str, bytes)) or not all(is_int(i) for i in ids):
        raise ClipBlipError("decode takes a sequence of int token ids; pass ids produced by this tokenizer")
    seq = [int(i) for i in ids]
    bad = [i for i in seq if not 0 <= i < vocab_size]
    if bad:
        raise ClipBlipError(f"cannot decode ids outside [0, {vocab_size}): {bad[:5]}; pass ids from this tokenizer")
    return seq
