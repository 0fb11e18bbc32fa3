"""`load` and `save`: a model from any source clipblip reads, on the device and at the precision asked for.

`clipblip.load` is this `load`; modules inside clipblip import it from here, never from the package root (the
root is the public face, above every layer). The model code is imported when a model is loaded, not before:
`import clipblip` (and `clipblip --help`) stays light.
"""

from __future__ import annotations

from pathlib import Path

from .errors import ClipBlipError


def load(source, *, arch: str | None = None, device: str = "auto", precision: str = "auto",
         strict_vocab: bool = False):
    """A model from a native or Hugging Face directory, an OpenAI/open_clip file, or a catalog name, on `device`
    at `precision` (the rule, and what "auto" means, is in clipblip/runtime.py).

    `arch` names the architecture of a bare open_clip file (e.g. 'ViT-B-32'), whose activation and head counts
    are not in its tensors. A model with a closed word vocabulary (the embedded Shapes models) warns about texts
    with words outside it (clipblip.errors.VocabularyWarning, naming `source`); `strict_vocab=True` makes such a
    text a ClipBlipError. Open vocabularies (CLIP's BPE, BERT's WordPiece) read every text.
    """
    from . import checkpoint, runtime

    rt = runtime.resolve(device, precision)  # a bad device or precision fails before any file is read
    path = Path(source)
    if path.is_dir():
        model = checkpoint.load_dir(path, arch)
    elif path.is_file():
        model = checkpoint.load_file_checkpoint(path, arch)
    else:
        model = _load_catalog(str(source))
    if model.config.text.vocab:  # a word-level tokenizer: it names the model in its warnings
        model.tokenizer.owner, model.tokenizer.strict = str(source), strict_vocab
    return runtime.apply(model.eval(), rt)


def _load_catalog(name: str):
    from . import catalog, checkpoint, hub

    packaged = catalog.embedded(name)
    if packaged is not None:
        return checkpoint.load_dir(packaged)
    if name in catalog.EMBEDDED:
        raise ClipBlipError(f"the embedded model {name!r} is not in this installation (it has "
                            f"{', '.join(n for n in catalog.EMBEDDED if catalog.embedded(n)) or 'none'}); "
                            f"train it with `clipblip train --preset {name}` and pass the run's model/ folder")
    try:
        entry = catalog.get(name)
    except ClipBlipError as e:
        raise ClipBlipError(f"{name!r} is neither an existing path nor a catalog name: {e}") from None
    local = hub.resolve(entry)
    if local.is_dir():
        return checkpoint.load_dir(local, entry.arch, entry.preprocess)
    return checkpoint.load_file_checkpoint(local, entry.arch, entry.preprocess)


def save(model, directory):
    """Write `model` in the native format (config.json + model.safetensors)."""
    from . import checkpoint

    return checkpoint.save(model, directory)
