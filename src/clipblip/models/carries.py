"""What a model carries besides its weights: its image preprocessing, taken from the config (saved with the
weights) unless a variant is assigned, e.g. `model.preprocess = dataclasses.replace(model.preprocess, fast=True)`;
and where it runs (see runtime.py): its device, dtype and precision, read from the weights themselves."""

import torch


class CarriesPreprocess:
    _preprocess = None

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
        """int8 when its Linear layers are torch's quantized ones (runtime.py), else what its dtype says."""
        if any(type(m).__module__.startswith("torch.ao.nn.quantized") for m in self.modules()):
            return "int8"
        return {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(self.dtype, "fp32")
