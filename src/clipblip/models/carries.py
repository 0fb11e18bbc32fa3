"""What a model carries besides its weights: its image preprocessing, taken from the config (saved with the
weights) unless a variant is assigned, e.g. `model.preprocess = dataclasses.replace(model.preprocess, fast=True)`;
and where it runs (see runtime.py): its device, dtype and precision, read from the weights themselves."""

import torch


class CarriesPreprocess:
    _preprocess = None
    _int8 = False  # set by runtime.apply when its Linear layers were quantized

    @property
    def preprocess(self):
        return self._preprocess or self.config.image

    @preprocess.setter
    def preprocess(self, value):
        self._preprocess = value

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        """The dtype activations are computed in (float32 for int8, whose Linear layers take float inputs)."""
        return next(self.parameters()).dtype

    @property
    def precision(self) -> str:
        return "int8" if self._int8 else {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(self.dtype, "fp32")
