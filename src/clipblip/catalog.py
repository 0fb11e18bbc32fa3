"""Known releases: a catalog name -> where the weights live, how they are laid out, and how images are prepared.

Plain data, no torch. Names follow open_clip (`<arch>/<pretrained tag>`) for CLIP; BLIP releases on the
Hugging Face Hub get short names (`blip-base-caption`), and Salesforce's original `.pth` files are named after
the file (`blip/model_base_retrieval_coco`). Sources are open_clip `pretrained.py` and `model_configs/*.json`,
openai/CLIP `clip/clip.py`, salesforce/BLIP `README.md`, `configs/*.yaml`, `configs/med_config.json`,
`models/blip.py` and `models/vit.py`, and the file listings of the Hub repos.
"""

import difflib
from dataclasses import dataclass
from pathlib import Path

from .errors import ClipBlipError
from .image import OPENAI_MEAN, OPENAI_STD

FAMILIES = ("clip", "blip")
FORMATS = ("open_clip", "hf_clip", "blip_original", "hf_blip")
INCEPTION_MEAN = (0.5, 0.5, 0.5)
INCEPTION_STD = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class Entry:
    name: str
    family: str  # "clip" | "blip"
    arch: str  # key into ARCHS
    hub_id: str | None  # Hugging Face repo holding `files`; None where the release is only a direct download (`url`)
    files: tuple[str, ...]  # first one is the weights file
    format: str  # layout of the weights file, one of FORMATS
    preprocess: dict  # size, mean, std, interpolation, resize ("shortest": resize short side + centre crop; "squash")
    url: str | None = None  # the release's own direct download
    sha256: str | None = None  # of the file at `url`; None where the publisher gives none
    task: str | None = None  # BLIP: "pretrain" | "retrieval_coco" | "retrieval_flickr" | "caption_coco" | "vqa"


# ---- architectures ----------------------------------------------------------------------------------------------
# CLIP configs are open_clip's model_configs JSON verbatim (a test compares them). open_clip defaults that apply
# when a key is absent: vision head_width 64 (ViT heads = width // head_width; ResNet attention-pool heads =
# width * 32 // 64), mlp_ratio 4.0, GELU unless quick_gelu, LayerNorm eps 1e-5, class-token pooling; text pools at
# the EOT token (the highest id, which is why open_clip's argmax works). None of the archs below needs an open_clip
# feature beyond that (no attentional pooler, no text pool_type change, no LayerScale); H/g/bigG need head_width
# and g/bigG a non-4 mlp_ratio (MLP width = int(width * mlp_ratio): 6144 and 8192).

def _quickgelu(cfg: dict) -> dict:
    # OpenAI trained with QuickGELU (x * sigmoid(1.702 x)); loading its weights into GELU silently drifts.
    return {"embed_dim": cfg["embed_dim"], "quick_gelu": True, "vision_cfg": dict(cfg["vision_cfg"]),
            "text_cfg": dict(cfg["text_cfg"])}


def _text(width: int, heads: int, layers: int = 12) -> dict:
    return {"context_length": 77, "vocab_size": 49408, "width": width, "heads": heads, "layers": layers}


def _resnet(embed_dim, size, layers, width, text_width, text_heads) -> dict:
    return {"embed_dim": embed_dim, "vision_cfg": {"image_size": size, "layers": layers, "width": width,
                                                   "patch_size": None},
            "text_cfg": _text(text_width, text_heads)}


def _vit(embed_dim, size, layers, width, patch, text, **extra) -> dict:
    vision = {"image_size": size, "layers": layers, "width": width, **extra, "patch_size": patch}
    return {"embed_dim": embed_dim, "vision_cfg": vision, "text_cfg": text}


_CLIP_GELU = {
    "RN50": _resnet(1024, 224, [3, 4, 6, 3], 64, 512, 8),
    "RN101": _resnet(512, 224, [3, 4, 23, 3], 64, 512, 8),
    "RN50x4": _resnet(640, 288, [4, 6, 10, 6], 80, 640, 10),
    "RN50x16": _resnet(768, 384, [6, 8, 18, 8], 96, 768, 12),
    "RN50x64": _resnet(1024, 448, [3, 15, 36, 10], 128, 1024, 16),
    "ViT-B-32": _vit(512, 224, 12, 768, 32, _text(512, 8)),
    "ViT-B-16": _vit(512, 224, 12, 768, 16, _text(512, 8)),
    "ViT-L-14": _vit(768, 224, 24, 1024, 14, _text(768, 12)),
    "ViT-L-14-336": _vit(768, 336, 24, 1024, 14, _text(768, 12)),
    "ViT-H-14": _vit(1024, 224, 32, 1280, 14, _text(1024, 16, 24), head_width=80),
    "ViT-g-14": _vit(1024, 224, 40, 1408, 14, _text(1024, 16, 24), head_width=88, mlp_ratio=4.3637),
    "ViT-bigG-14": _vit(1280, 224, 48, 1664, 14, _text(1280, 20, 32), head_width=104, mlp_ratio=4.9231),
}
_QUICKGELU_ARCHS = ("RN50", "RN101", "RN50x4", "RN50x16", "RN50x64", "ViT-B-32", "ViT-B-16", "ViT-L-14",
                    "ViT-L-14-336")

# BLIP: ViT from salesforce/BLIP models/vit.py (qkv bias, LayerNorm eps 1e-6, GELU) and the BERT-base text model of
# configs/med_config.json (30522 words + [DEC] + [ENC]; no token-type embeddings). The image size is part of the
# arch because it fixes the position-embedding shape in the weights: pretraining at 224, fine-tunes at 384, VQA at
# 480 (configs/vqa.yaml). The transformers conversions are all at 384.


def _blip(size: int, large: bool) -> dict:
    width = 1024 if large else 768
    vision = {"image_size": size, "patch_size": 16, "width": width, "layers": 24 if large else 12,
              "heads": 16 if large else 12, "mlp_ratio": 4.0, "eps": 1e-6}
    text = {"vocab_size": 30524, "width": 768, "layers": 12, "heads": 12, "intermediate_size": 3072,
            "max_position_embeddings": 512, "eps": 1e-12, "encoder_width": width,
            "pad_token_id": 0, "sep_token_id": 102, "bos_token_id": 30522, "enc_token_id": 30523}
    return {"vision": vision, "text": text, "embed_dim": 256}


ARCHS: dict[str, dict] = {
    **_CLIP_GELU,
    **{f"{name}-quickgelu": _quickgelu(_CLIP_GELU[name]) for name in _QUICKGELU_ARCHS},
    "blip-base": _blip(224, large=False),
    "blip-base-384": _blip(384, large=False),
    "blip-base-480": _blip(480, large=False),
    "blip-large": _blip(224, large=True),
    "blip-large-384": _blip(384, large=True),
}


def image_size(arch: str) -> int:
    cfg = ARCHS[arch]
    return cfg["vision_cfg"]["image_size"] if "vision_cfg" in cfg else cfg["vision"]["image_size"]


def _preprocess(arch: str, resize: str, mean=OPENAI_MEAN, std=OPENAI_STD) -> dict:
    # A fresh dict per entry, so changing one entry's preprocessing cannot change another's.
    return {"size": image_size(arch), "mean": list(mean), "std": list(std), "interpolation": "bicubic",
            "resize": resize}


# ---- CLIP releases ----------------------------------------------------------------------------------------------
# OpenAI's own .pt files (TorchScript archives holding the same state-dict keys as open_clip) are at `url`, named
# by their sha256 as openai/CLIP `_MODELS` lists them. The weights fetched by default are timm's open_clip-format
# copies, the hf_hub that open_clip pretrained.py gives.
_OPEN_CLIP_SAFETENSORS = ("open_clip_model.safetensors", "open_clip_config.json")
_OPEN_CLIP_BIN = ("open_clip_pytorch_model.bin", "open_clip_config.json")
_OPENAI_URL = "https://openaipublic.azureedge.net/clip/models"
_OPENAI = [
    # (catalog name, arch, timm hub repo, url, sha256)
    ("RN50/openai", "RN50-quickgelu", "timm/resnet50_clip.openai",
     f"{_OPENAI_URL}/afeb0e10f9e5a86da6080e35cf09123aca3b358a0c3e3b6c78a7b63bc04b6762/RN50.pt",
     "afeb0e10f9e5a86da6080e35cf09123aca3b358a0c3e3b6c78a7b63bc04b6762"),
    ("RN101/openai", "RN101-quickgelu", "timm/resnet101_clip.openai",
     f"{_OPENAI_URL}/8fa8567bab74a42d41c5915025a8e4538c3bdbe8804a470a72f30b0d94fab599/RN101.pt",
     "8fa8567bab74a42d41c5915025a8e4538c3bdbe8804a470a72f30b0d94fab599"),
    ("RN50x4/openai", "RN50x4-quickgelu", "timm/resnet50x4_clip.openai",
     f"{_OPENAI_URL}/7e526bd135e493cef0776de27d5f42653e6b4c8bf9e0f653bb11773263205fdd/RN50x4.pt",
     "7e526bd135e493cef0776de27d5f42653e6b4c8bf9e0f653bb11773263205fdd"),
    ("RN50x16/openai", "RN50x16-quickgelu", "timm/resnet50x16_clip.openai",
     f"{_OPENAI_URL}/52378b407f34354e150460fe41077663dd5b39c54cd0bfd2b27167a4a06ec9aa/RN50x16.pt",
     "52378b407f34354e150460fe41077663dd5b39c54cd0bfd2b27167a4a06ec9aa"),
    ("RN50x64/openai", "RN50x64-quickgelu", "timm/resnet50x64_clip.openai",
     f"{_OPENAI_URL}/be1cfb55d75a9666199fb2206c106743da0f6468c9d327f3e0d0a543a9919d9c/RN50x64.pt",
     "be1cfb55d75a9666199fb2206c106743da0f6468c9d327f3e0d0a543a9919d9c"),
    ("ViT-B-32/openai", "ViT-B-32-quickgelu", "timm/vit_base_patch32_clip_224.openai",
     f"{_OPENAI_URL}/40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af/ViT-B-32.pt",
     "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af"),
    ("ViT-B-16/openai", "ViT-B-16-quickgelu", "timm/vit_base_patch16_clip_224.openai",
     f"{_OPENAI_URL}/5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f/ViT-B-16.pt",
     "5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f"),
    ("ViT-L-14/openai", "ViT-L-14-quickgelu", "timm/vit_large_patch14_clip_224.openai",
     f"{_OPENAI_URL}/b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836/ViT-L-14.pt",
     "b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836"),
    ("ViT-L-14-336/openai", "ViT-L-14-336-quickgelu", "timm/vit_large_patch14_clip_336.openai",
     f"{_OPENAI_URL}/3035c92b350959924f9f00213499208652fc7ea050643e8b385c2dac08641f02/ViT-L-14-336px.pt",
     "3035c92b350959924f9f00213499208652fc7ea050643e8b385c2dac08641f02"),
]

# LAION releases trained with open_clip use GELU, except the LAION-400M ViT-B-32 runs (QuickGELU, per open_clip).
# The laion/ repos hold open_clip_pytorch_model.bin from their first upload; not all of them carry a safetensors
# copy (bigG does not). The LAION-400M GitHub URLs name only an 8-hex sha256 prefix, so sha256 stays None.
_OPEN_CLIP_RELEASES = "https://github.com/mlfoundations/open_clip/releases/download/v0.2-weights"
_LAION = [
    # (catalog name, arch, hub repo, files, url, mean/std)
    ("ViT-B-32/laion2b_s34b_b79k", "ViT-B-32", "laion/CLIP-ViT-B-32-laion2B-s34B-b79K", _OPEN_CLIP_BIN, None,
     "openai"),
    ("ViT-B-16/laion2b_s34b_b88k", "ViT-B-16", "laion/CLIP-ViT-B-16-laion2B-s34B-b88K", _OPEN_CLIP_BIN, None,
     "openai"),
    # open_clip gives this one mean = std = 0.5 (INCEPTION_*), unlike every other LAION release here.
    ("ViT-L-14/laion2b_s32b_b82k", "ViT-L-14", "laion/CLIP-ViT-L-14-laion2B-s32B-b82K", _OPEN_CLIP_BIN, None,
     "inception"),
    ("ViT-H-14/laion2b_s32b_b79k", "ViT-H-14", "laion/CLIP-ViT-H-14-laion2B-s32B-b79K", _OPEN_CLIP_BIN, None,
     "openai"),
    ("ViT-g-14/laion2b_s34b_b88k", "ViT-g-14", "laion/CLIP-ViT-g-14-laion2B-s34B-b88K", _OPEN_CLIP_BIN, None,
     "openai"),
    ("ViT-bigG-14/laion2b_s39b_b160k", "ViT-bigG-14", "laion/CLIP-ViT-bigG-14-laion2B-39B-b160k", _OPEN_CLIP_BIN,
     None, "openai"),
    ("ViT-B-32/laion400m_e32", "ViT-B-32-quickgelu", "timm/vit_base_patch32_clip_224.laion400m_e32",
     _OPEN_CLIP_SAFETENSORS, f"{_OPEN_CLIP_RELEASES}/vit_b_32-quickgelu-laion400m_e32-46683a32.pt", "openai"),
    ("ViT-B-16/laion400m_e32", "ViT-B-16", "timm/vit_base_patch16_clip_224.laion400m_e32",
     _OPEN_CLIP_SAFETENSORS, f"{_OPEN_CLIP_RELEASES}/vit_b_16-laion400m_e32-55e67d44.pt", "openai"),
]
_NORMS = {"openai": (OPENAI_MEAN, OPENAI_STD), "inception": (INCEPTION_MEAN, INCEPTION_STD)}


def _clip_entries() -> list[Entry]:
    entries = [Entry(name, "clip", arch, repo, _OPEN_CLIP_SAFETENSORS, "open_clip", _preprocess(arch, "shortest"),
                     url=url, sha256=sha)
               for name, arch, repo, url, sha in _OPENAI]
    entries += [Entry(name, "clip", arch, repo, files, "open_clip", _preprocess(arch, "shortest", *_NORMS[norm]),
                      url=url)
                for name, arch, repo, files, url, norm in _LAION]
    return entries


# ---- BLIP releases ----------------------------------------------------------------------------------------------
# Salesforce's transformers conversions. Weights file per repo as its main branch lists it: the captioning repos
# and blip-vqa-base carry model.safetensors; the others only pytorch_model.bin. blip-vqa-capfilt-large is a ViT-B
# model (the conversion of model_base_vqa_capfilt_large.pth), despite "large" in its name.
_HF_BLIP = [
    # (catalog name, arch, hub repo, weights file, task)
    ("blip-base-caption", "blip-base-384", "Salesforce/blip-image-captioning-base", "model.safetensors",
     "caption_coco"),
    ("blip-large-caption", "blip-large-384", "Salesforce/blip-image-captioning-large", "model.safetensors",
     "caption_coco"),
    ("blip-base-itm-coco", "blip-base-384", "Salesforce/blip-itm-base-coco", "pytorch_model.bin", "retrieval_coco"),
    ("blip-large-itm-coco", "blip-large-384", "Salesforce/blip-itm-large-coco", "pytorch_model.bin",
     "retrieval_coco"),
    ("blip-base-itm-flickr", "blip-base-384", "Salesforce/blip-itm-base-flickr", "pytorch_model.bin",
     "retrieval_flickr"),
    ("blip-large-itm-flickr", "blip-large-384", "Salesforce/blip-itm-large-flickr", "pytorch_model.bin",
     "retrieval_flickr"),
    ("blip-base-vqa", "blip-base-384", "Salesforce/blip-vqa-base", "model.safetensors", "vqa"),
    ("blip-base-vqa-capfilt-large", "blip-base-384", "Salesforce/blip-vqa-capfilt-large", "pytorch_model.bin", "vqa"),
]

# The original checkpoints from salesforce/BLIP's README. Salesforce publishes no checksums. The NLVR2 file is left
# out: it needs BLIP's two-image encoder, which is not one of our models.
_BLIP_URL = "https://storage.googleapis.com/sfr-vision-language-research/BLIP/models"
_BLIP_ORIGINAL = [
    # (file stem, arch, task)
    ("model_base_14M", "blip-base", "pretrain"),
    ("model_base", "blip-base", "pretrain"),
    ("model_base_capfilt_large", "blip-base", "pretrain"),
    ("model_large", "blip-large", "pretrain"),
    ("model_base_retrieval_coco", "blip-base-384", "retrieval_coco"),
    ("model_large_retrieval_coco", "blip-large-384", "retrieval_coco"),
    ("model_base_retrieval_flickr", "blip-base-384", "retrieval_flickr"),
    ("model_large_retrieval_flickr", "blip-large-384", "retrieval_flickr"),
    ("model_base_caption_capfilt_large", "blip-base-384", "caption_coco"),
    ("model_large_caption", "blip-large-384", "caption_coco"),
    ("model_vqa", "blip-base-480", "vqa"),
    ("model_base_vqa_capfilt_large", "blip-base-480", "vqa"),
]


def _blip_entries() -> list[Entry]:
    # BLIP's test transform resizes straight to size x size ("squash"), bicubic, with OpenAI's mean/std.
    entries = [Entry(name, "blip", arch, repo, (weights, "config.json"), "hf_blip", _preprocess(arch, "squash"),
                     task=task)
               for name, arch, repo, weights, task in _HF_BLIP]
    entries += [Entry(f"blip/{stem}", "blip", arch, None, (f"{stem}.pth",), "blip_original",
                      _preprocess(arch, "squash"), url=f"{_BLIP_URL}/{stem}.pth", task=task)
                for stem, arch, task in _BLIP_ORIGINAL]
    return entries


CATALOG: dict[str, Entry] = {entry.name: entry for entry in _clip_entries() + _blip_entries()}

# Names people already type: OpenAI's (clip.available_models()) and the Hub repo ids.
ALIASES: dict[str, str] = {
    "RN50": "RN50/openai",
    "RN101": "RN101/openai",
    "RN50x4": "RN50x4/openai",
    "RN50x16": "RN50x16/openai",
    "RN50x64": "RN50x64/openai",
    "ViT-B/32": "ViT-B-32/openai",
    "ViT-B/16": "ViT-B-16/openai",
    "ViT-L/14": "ViT-L-14/openai",
    "ViT-L/14@336px": "ViT-L-14-336/openai",
    **{entry.hub_id: entry.name for entry in CATALOG.values() if entry.hub_id},
}


def get(name: str) -> Entry:
    """The entry for a catalog name or alias; an unknown name raises ClipBlipError with the closest names."""
    if name in CATALOG:
        return CATALOG[name]
    if name in ALIASES:
        return CATALOG[ALIASES[name]]
    known = list(CATALOG) + list(ALIASES)
    folded = [k for k in known if k.lower() == name.lower()]
    if folded:  # "vit-b-32/openai": case is the only difference
        return get(folded[0])
    # The embedded names are suggested too: `load` asks here for any name it does not ship, typos of them included.
    by_lower = {k.lower(): k for k in reversed([*EMBEDDED, *known])}
    close = [by_lower[c] for c in difflib.get_close_matches(name.lower(), list(by_lower), n=3, cutoff=0.6)]
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise ClipBlipError(f"unknown model name {name!r}.{hint} Run `clipblip models` to list the known names, "
                        "or pass a path to a local checkpoint file or directory.")


def names(family: str | None = None) -> list[str]:
    """Catalog names in catalog order, optionally only one family ("clip" or "blip")."""
    if family is not None and family not in FAMILIES:
        raise ClipBlipError(f"unknown model family {family!r}; use one of {', '.join(FAMILIES)}.")
    return [name for name, entry in CATALOG.items() if family is None or entry.family == family]


# ---- embedded models ----------------------------------------------------------------------------------------------
# Tiny models trained on the Shapes world, shipped inside the package (fp16, with a card.json saying how they
# were trained and what they scored). The default of every command that needs a model.
EMBEDDED_DIR = Path(__file__).parent / "weights"
EMBEDDED = {"shapes-clip": "clip", "shapes-blip": "blip", "shapes-blip-vqa": "blip"}
DEFAULT = {"clip": "shapes-clip", "blip": "shapes-blip", "vqa": "shapes-blip-vqa"}


def embedded(name: str) -> Path | None:
    """The packaged directory of an embedded model, or None (not a name of one, or not shipped in this build)."""
    path = EMBEDDED_DIR / name
    return path if name in EMBEDDED and (path / "config.json").is_file() else None
