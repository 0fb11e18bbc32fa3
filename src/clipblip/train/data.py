"""Batches for training: which records a step reads is a pure function of (seed, step), so a resumed run reads
exactly what an uninterrupted one would, and ranks read disjoint slices of each global batch.

Map-style datasets (the Shapes world, CSV, JSONL, folders, COCO, VQA): sample position p of the stream is record
perm_e[p mod N] of epoch e = p div N, with perm_e a seeded permutation; a global batch is positions
[b * GB, (b + 1) * GB) and rank r takes its r-th slice. Iterable datasets (webdataset shards) are split by shard
across ranks (and DataLoader workers); position p is sample p mod L of epoch p div L (L: the rank's epoch length),
and a resume skips to it.
A record i with several captions uses caption (i + e) mod k in epoch e. Images that cannot be read are skipped and
reported through the batch (`skipped`); they never stop the run.
"""

from __future__ import annotations

import itertools
import zlib

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset

from ..errors import ClipBlipError
from ..image import load_image


def permutation(n: int, seed: int, epoch: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(n)


class StepBatches:
    """Infinite batch sampler: lists of (record index, epoch) for this rank, from batch `start` on."""

    def __init__(self, n: int, global_batch: int, rank: int, world: int, start: int, seed: int, shuffle=True):
        if n == 0:
            raise ClipBlipError("the training set is empty")
        if global_batch % world:
            raise ClipBlipError(f"batch_size={global_batch} is not divisible by the {world} ranks")
        self.n, self.gb, self.local, self.rank = n, global_batch, global_batch // world, rank
        self.start, self.seed, self.shuffle = start, seed, shuffle
        self._perms: dict[int, np.ndarray] = {}

    def _perm(self, epoch: int) -> np.ndarray:
        if epoch not in self._perms:
            self._perms = {epoch: permutation(self.n, self.seed, epoch) if self.shuffle else np.arange(self.n)}
        return self._perms[epoch]

    def __iter__(self):
        for b in itertools.count(self.start):
            first = b * self.gb + self.rank * self.local
            yield [(int(self._perm(p // self.n)[p % self.n]), p // self.n) for p in range(first, first + self.local)]


class _Keyed(Dataset):
    def __init__(self, records):
        self.records = records

    def __len__(self):
        return len(self.records)

    def __getitem__(self, key):
        index, epoch = key
        return self.records[index], index, epoch


class _Stream(IterableDataset):
    """Records of an iterable source, batched to `local`, tagged (record, id hash, epoch). `open_at(skip)` opens
    the source skipping its first `skip` samples. Sample position p of the stream is sample p mod L of epoch
    p div L (L: this rank's samples per epoch), as for map-style data, so a resume at any step reads on exactly
    where an uninterrupted run would."""

    def __init__(self, open_at, start: int, local: int):
        self.open_at, self.start, self.local = open_at, start, local

    def _records(self):
        epoch, skip = 0, self.start
        while True:
            read = False
            for n, rec in enumerate(self.open_at(skip), skip + 1):
                read = True
                yield rec, zlib.crc32(str(rec.get("id", n)).encode()), epoch
            if not read and skip:  # resumed past the end of an epoch: go to the same place in a later one
                length = _epoch_length(self.open_at(0), skip)
                epoch, skip = epoch + skip // length, skip % length
            elif not read:
                raise ClipBlipError("the training shards hold no samples for this rank")
            else:
                epoch, skip = epoch + 1, 0

    def __iter__(self):
        it = self._records()
        while True:
            yield list(itertools.islice(it, self.local))


def _epoch_length(source, past: int) -> int:
    """Samples in one pass over `source`, which ended before sample `past`: its len() when it knows it (shards
    with a manifest), else, or when len() counts samples the reader rejected, counted by reading it once."""
    try:
        length = len(source)
    except TypeError:
        length = None
    if length is None or length > past:
        length = sum(1 for _ in source)
    if not length:
        raise ClipBlipError("the training shards hold no samples for this rank")
    if length > past:  # read again, it holds more than a moment ago: resuming from it would loop for ever
        raise ClipBlipError("the training shards changed while they were read; resume again")
    return length


def loader(records, collate, *, global_batch: int, rank: int, world: int, start_batch: int, seed: int,
           workers: int = 0):
    """An endless iterator of collated batches for this rank, from global batch `start_batch` on. `records` is a
    map-style dataset, or for an iterable source a function open_at(skip) -> iterable of this rank's records."""
    if callable(records):
        local = global_batch // world
        ds = _Stream(records, start_batch * local, local)
        return iter(DataLoader(ds, batch_size=None, collate_fn=collate, num_workers=workers))
    sampler = StepBatches(len(records), global_batch, rank, world, start_batch, seed)
    return iter(DataLoader(_Keyed(records), batch_sampler=sampler, collate_fn=collate, num_workers=workers,
                           persistent_workers=workers > 0))


def to_device(batch: dict, device) -> dict:
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def _choose(options: list, index: int, epoch: int):
    """One of a record's captions (or questions): each epoch the next, starting at a place set by the record, so
    that every epoch sees all positions (a Shapes record's first question is always a colour question)."""
    return options[(index + epoch) % len(options)]


def edit(record: dict, index: int, epoch: int) -> str | None:
    """The minimal-edit negative of the caption `_choose` shows in this epoch: one of that caption's
    "negatives" (any edit type), picked by a hash of (record, epoch); None when it has none."""
    captions = record.get("captions") or [record.get("caption")]
    negatives = record.get("negatives") or []
    k = (index + epoch) % len(captions)
    options = negatives[k] if k < len(negatives) else []
    if not options:
        return None
    return options[zlib.crc32(f"{index}/{epoch}".encode()) % len(options)]["text"]


class Collate:
    """Records -> tensors for an objective: decode and preprocess images, tokenize in the model's tokenizer.

    Kinds: "clip" {"pixels", "tokens"}; "blip" {"pixels", "ids", "item_ids"}; "vqa" {"pixels", "question_ids",
    "answer_ids", "answer_weights", "answer_counts"}. Every batch also lists the records it `skipped`.
    `edits`: also one minimal-edit negative of each caption shown ("edit_tokens" or "edit_ids", see `edit`) and
    "has_edit" (False where the record holds none for it: its row is a copy of the caption)."""

    def __init__(self, model, kind: str, edits: bool = False):
        self.kind, self.preprocess, self.tokenizer = kind, model.preprocess, model.tokenizer
        self.edits = edits

    def __call__(self, items) -> dict:
        good, images, skipped = [], [], []
        for record, index, epoch in items:
            try:
                images.append(load_image(record["image"]))
                good.append((record, index, epoch))
            except (ClipBlipError, KeyError) as e:
                skipped.append((str(record.get("id", index)), str(e)))
        batch = {"skipped": skipped, "size": len(good)}
        if not good:
            return batch
        batch["pixels"] = self.preprocess(images)
        if self.kind == "vqa":
            batch.update(self._vqa(good))
            return batch
        texts = [_choose(r.get("captions") or [r["caption"]], i, e) for r, i, e in good]
        batch.update(self._texts(texts))
        if self.kind != "clip":
            batch["item_ids"] = torch.tensor([i for _, i, _ in good], dtype=torch.long)
        if self.edits:
            chosen = [edit(r, i, e) for r, i, e in good]
            if not any(chosen):
                raise ClipBlipError("this objective trains on minimal-edit negatives and no record of a batch has "
                                    "one: train it on the Shapes world (data=shapes), whose records carry them")
            batch.update({f"edit_{k}": v for k, v in self._texts([c or t for c, t in zip(chosen, texts)]).items()})
            batch["has_edit"] = torch.tensor([c is not None for c in chosen])
        return batch

    def _texts(self, texts: list[str]) -> dict:
        if self.kind == "clip":
            return {"tokens": self.tokenizer(texts)}
        return {"ids": self.tokenizer(texts, first="cls", pad_to_max=True)[0]}

    def _vqa(self, good) -> dict:
        questions, answers, weights, counts = [], [], [], []
        for record, index, epoch in good:
            if "question" not in record:  # a Shapes record holds several questions; one per epoch
                qa = _choose(record["vqa"], index, epoch)
                record = {"question": qa["question"], "answers": [qa["answer"]]}
            ans = list(record["answers"])
            w = record.get("answer_weights") or [1.0 / len(ans)] * len(ans)
            questions.append(record["question"])
            answers += ans
            weights += list(w)
            counts.append(len(ans))
        return {"question_ids": self.tokenizer(questions, first="enc", pad_to_max=True)[0],
                "answer_ids": self.tokenizer(answers, first="dec", pad_to_max=True)[0],
                "answer_weights": torch.tensor(weights, dtype=torch.float32),
                "answer_counts": torch.tensor(counts, dtype=torch.long)}
