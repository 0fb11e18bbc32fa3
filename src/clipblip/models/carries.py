"""What a model carries besides its weights: its image preprocessing, taken from the config (saved with the
weights) unless a variant is assigned, e.g. `model.preprocess = dataclasses.replace(model.preprocess, fast=True)`."""


class CarriesPreprocess:
    _preprocess = None

    @property
    def preprocess(self):
        return self._preprocess or self.config.image

    @preprocess.setter
    def preprocess(self, value):
        self._preprocess = value
