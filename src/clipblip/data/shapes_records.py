"""The Shapes world as a map-style dataset of records (what the readers give for files), generated on access."""

from __future__ import annotations

from .shapes import ShapesWorld


class ShapesRecords:
    """Records `world.sample(split, i)` for i < n: any index, in any order, in any process, is the same record.
    `n_objects` fixes the object count (1: the clean single-object set for shape and colour classification);
    `captions_only` leaves out negatives and questions (faster, for contrastive and captioning training)."""

    def __init__(self, split: str = "train", seed: int = 0, n: int = 20000, size: int = 64, n_objects=None,
                 captions_only: bool = False, **world):
        self.world = ShapesWorld(seed=seed, image_size=size, **world)
        self.split, self.n, self.n_objects, self.captions_only = split, int(n), n_objects, captions_only

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.n:
            raise IndexError(index)
        return self.world.sample(self.split, int(index), self.n_objects, self.captions_only)
