"""ONNX export: every graph equals clipblip within 1e-4 under onnxruntime (fp32) on the shipped models and on random
odd-shaped ones, at several batch sizes and text lengths; tokenizer.json gives clipblip's ids; onnx_config.json
says how to feed the graphs; the README's example scores images with no torch at all; the CLI's errors are one
line. onnx and onnxruntime come with the test extras; without them this file is skipped."""

import html
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import clipblip
from clipblip.cli import EXIT_ERROR, main
from clipblip.config import BertConfig, BlipConfig, ClipConfig, TextConfig, VisionConfig
from clipblip.export_onnx import ONNX_EXTRA, export_onnx
from clipblip.image import Preprocess
from clipblip.models import BLIP, CLIP

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

TOL = 1e-4
README = Path(__file__).resolve().parents[1] / "README.md"
TEXTS = ["a red circle", "two blue squares above a small star", "green",
         "a photo of many small purple hexagons left of three gray crosses and one large yellow triangle"]


def session(path):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1  # the CPU is shared
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


class Graphs:
    def __init__(self, folder: Path):
        self.folder = folder
        self._sessions = {}

    def __call__(self, name: str, **inputs) -> list[np.ndarray]:
        if name not in self._sessions:
            self._sessions[name] = session(self.folder / f"{name}.onnx")
        return self._sessions[name].run(None, {k: v.numpy() for k, v in inputs.items()})


def assert_close(got: np.ndarray, want: torch.Tensor):
    assert got.shape == tuple(want.shape)
    assert np.abs(got - want.numpy()).max() <= TOL


def check_clip(model, folder: Path, texts=TEXTS):
    run, s = Graphs(folder), model.config.vision.image_size
    with torch.no_grad():
        for batch in (1, 3):
            pixels = torch.randn(batch, 3, s, s)
            assert_close(run("image", pixel_values=pixels)[0], model.encode_image(pixels))
        ids = model.tokenize(texts)
        want = model.encode_text(ids)
    last_eot = int((ids == model.config.text.eot_id).int().argmax(1).max())
    for length in (ids.shape[1], last_eot + 1):  # padded to the context, or cut after the last EOT
        assert_close(run("text", input_ids=ids[:, :length])[0], want)
    assert_close(run("text", input_ids=ids[2:3, :3])[0], want[2:3])  # "green": sot, green, eot


def check_blip(model, folder: Path, texts=TEXTS[:3]):
    run, s, n = Graphs(folder), model.config.vision.image_size, len(texts)
    pixels = torch.randn(n, 3, s, s)
    with torch.no_grad():
        tokens, embeds = model.image_tokens(pixels), model.encode_image(pixels)
        ids, enc = model.tokenize(texts), model.tokenize(texts, first="enc")
        text_embeds = model.encode_text(ids)
        pairs = torch.cat([model.itm_logits(enc[i:i + 1], model.image_kv(tokens[i:i + 1])) for i in range(n)])
        one_image = model.itm_logits(enc, model.image_kv(tokens[:1]))
    assert_close(run("image", pixel_values=pixels)[0], embeds)
    got_tokens, got_embeds = run("vision", pixel_values=pixels)
    assert_close(got_tokens, tokens)
    assert_close(got_embeds, embeds)
    assert_close(run("text", input_ids=ids)[0], text_embeds)
    assert_close(run("text", input_ids=ids[2:3, :3])[0], text_embeds[2:3])  # the shortest row, unpadded
    assert_close(run("itm", image_tokens=tokens, input_ids=enc)[0], pairs)
    assert_close(run("itm", image_tokens=tokens[:1], input_ids=enc)[0], one_image)


def assert_same_ids(folder: Path, texts, want: torch.Tensor, pad_id: int):
    """tokenizer.json's ids are clipblip's, padded to the longest row (CLIP's tokenizer pads to its context)."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    got, want = np.array([e.ids for e in tok.encode_batch(texts)]), want.numpy()
    assert np.array_equal(got, want[:, : got.shape[1]]) and (want[:, got.shape[1]:] == pad_id).all()
    assert got.shape[1] == max(int((row != pad_id).nonzero()[0].max()) + 1 for row in want)


# ---- the shipped models ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def shapes_clip(tmp_path_factory):
    model = clipblip.load("shapes-clip", device="cpu", precision="fp32")
    return model, export_onnx(model, tmp_path_factory.mktemp("onnx") / "shapes-clip")


@pytest.fixture(scope="module")
def shapes_blip(tmp_path_factory):
    model = clipblip.load("shapes-blip", device="cpu", precision="fp32")
    return model, export_onnx(model, tmp_path_factory.mktemp("onnx") / "shapes-blip")


def test_shapes_clip_graphs_equal_clipblip(shapes_clip):
    check_clip(*shapes_clip)


def test_shapes_blip_graphs_equal_clipblip(shapes_blip):
    check_blip(*shapes_blip)


def test_word_tokenizers_give_clipblip_ids(shapes_clip, shapes_blip):
    texts = [*TEXTS, "A RED Circle, above  the star?", " ".join(["red"] * 40)]  # case, punctuation, truncation
    for model, folder in (shapes_clip, shapes_blip):
        assert_same_ids(folder, texts, model.tokenize(texts), pad_id=0)
        assert_same_ids(folder, texts[2:3], model.tokenize(texts[2:3]), pad_id=0)


def test_config_says_how_to_feed_the_graphs(shapes_clip, shapes_blip):
    (clip, clip_dir), (blip, blip_dir) = shapes_clip, shapes_blip
    cfg = json.loads((clip_dir / "onnx_config.json").read_text())
    assert cfg["opset"] == 17 and cfg["onnx"] == onnx.__version__ and cfg["onnxruntime"] == ort.__version__
    assert cfg["graphs"]["image"]["inputs"] == {"pixel_values": {"shape": ["batch", 3, 64, 64], "dtype": "float32"}}
    assert cfg["graphs"]["text"]["inputs"] == {"input_ids": {"shape": ["batch", "length"], "dtype": "int64"}}
    assert cfg["logit_scale"] == pytest.approx(float(clip.logit_scale.detach().exp()), rel=1e-6)
    assert (cfg["text"]["context_length"], cfg["text"]["eot_id"], cfg["image"]["resize"]) == (32, 3, "squash")
    for name, path in (("image", clip_dir / "image.onnx"), ("itm", blip_dir / "itm.onnx")):
        model = onnx.load(str(path))
        assert model.opset_import[0].version == 17
        assert [i.name for i in model.graph.input] == list(
            json.loads((path.parent / "onnx_config.json").read_text())["graphs"][name]["inputs"])
    blip_cfg = json.loads((blip_dir / "onnx_config.json").read_text())
    assert sorted(blip_cfg["graphs"]) == ["image", "itm", "text", "vision"]
    assert blip_cfg["text"]["enc_id"] == 5 and blip_cfg["logit_scale"] == pytest.approx(float(1 / blip.temp.detach()))


# ---- random odd-shaped models ------------------------------------------------------------------------------------
def randomize_batchnorm(model):
    """Eval-mode BatchNorm with default statistics is the identity; give it some to carry."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2.0)
                m.weight.normal_()
                m.bias.normal_()
    return model


ODD_TEXT = TextConfig(context_length=13, width=21, heads=3, layers=2, mlp_dim=33, output_dim=18)  # OpenAI's BPE


@pytest.mark.parametrize("vision", [
    VisionConfig(image_size=42, patch_size=6, width=30, heads=5, layers=3, mlp_dim=47, output_dim=18),
    VisionConfig(arch="resnet", image_size=96, width=8, layers=(1, 2, 1, 1), heads=4, output_dim=18),
], ids=["vit", "resnet"])
def test_odd_clips_equal_clipblip(vision, tmp_path):
    model = randomize_batchnorm(CLIP(ClipConfig(vision=vision, text=ODD_TEXT, image=Preprocess(size=vision.image_size),
                                                embed_dim=18)).eval())
    check_clip(model, export_onnx(model, tmp_path))


def test_odd_blip_equals_clipblip(tmp_path):
    model = BLIP(BlipConfig(
        vision=VisionConfig(image_size=30, patch_size=5, width=24, heads=3, layers=2, mlp_dim=40, act="gelu",
                            norm_eps=1e-6, norm_pre=False, patch_bias=True, output_dim=None),
        text=BertConfig(width=20, heads=5, layers=2, mlp_dim=36, max_positions=24, max_length=20, cross_width=24),
        image=Preprocess(size=30, resize="squash"), embed_dim=12)).eval()
    check_blip(model, export_onnx(model, tmp_path))


def test_bpe_tokenizer_gives_clipblip_ids_of_cleaned_text(tmp_path):
    import ftfy

    model = CLIP(ClipConfig(vision=VisionConfig(image_size=16, patch_size=8, width=8, heads=2, layers=1, mlp_dim=8,
                                                output_dim=8), text=ODD_TEXT, embed_dim=8))
    folder = export_onnx(model, tmp_path, parts=["text"])
    ascii_texts = ["Hello   World!! it's 42 x", "don't STOP; e.g. 3.14 -- ok?", "a " * 30]
    assert_same_ids(folder, ascii_texts, model.tokenize(ascii_texts), pad_id=0)
    others = ["Café naïve ΣΟΦΟΣ", "Tom &amp; Jerry", "日本語のテキスト", "mojibake: Ã©t\u00e9"]
    cleaned = [" ".join(html.unescape(html.unescape(ftfy.fix_text(t))).split()).lower() for t in others]
    assert_same_ids(folder, cleaned, model.tokenize(others), pad_id=0)
    assert sorted(p.name for p in folder.iterdir()) == ["onnx_config.json", "text.onnx", "tokenizer.json"]


def test_wordpiece_tokenizer_gives_clipblip_ids(tiny_blip_dir, tmp_path):
    model = clipblip.load(tiny_blip_dir)
    folder = export_onnx(model, tmp_path, parts=["text"])
    texts = ["A dog's TOY.", "naïve café, 日本 [SEP] x", "unaffable " * 30, "?"]
    with pytest.warns(UserWarning, match="truncated"):
        want = model.tokenize(texts)
    assert_same_ids(folder, texts, want, pad_id=0)


def test_blip_without_itc_exports_the_itm_graphs(tmp_path):
    model = BLIP(BlipConfig(vision=VisionConfig(image_size=16, patch_size=8, width=8, heads=2, layers=1, mlp_dim=8,
                                                act="gelu", norm_pre=False, output_dim=None),
                            text=BertConfig(width=8, heads=2, layers=1, mlp_dim=8, max_positions=8, max_length=8,
                                            cross_width=8), parts=("itm",))).eval()
    cfg = json.loads((export_onnx(model, tmp_path) / "onnx_config.json").read_text())
    assert sorted(cfg["graphs"]) == ["itm", "vision"] and "logit_scale" not in cfg
    assert list(cfg["graphs"]["vision"]["outputs"]) == ["image_tokens"]
    pixels = torch.randn(2, 3, 16, 16)
    got = Graphs(tmp_path)("vision", pixel_values=pixels)
    assert len(got) == 1
    with torch.no_grad():
        assert_close(got[0], model.image_tokens(pixels))


# ---- what a user meets -------------------------------------------------------------------------------------------
def test_export_refuses_what_it_cannot_write(tiny_blip_dir, tmp_path):
    clip = CLIP(ClipConfig(vision=VisionConfig(image_size=16, patch_size=8, width=8, heads=2, layers=1, mlp_dim=8,
                                               output_dim=8), text=ODD_TEXT, embed_dim=8))
    with pytest.raises(clipblip.ClipBlipError, match="no ONNX graph 'itm': pick from image, text"):
        export_onnx(clip, tmp_path, parts=["itm"])
    with pytest.raises(clipblip.ClipBlipError, match="precision='fp32'"):
        export_onnx(clip.to(torch.bfloat16), tmp_path)
    captioner = BLIP(BlipConfig(vision=VisionConfig(image_size=16, patch_size=8, width=8, heads=2, layers=1,
                                                    mlp_dim=8, act="gelu", norm_pre=False, output_dim=None),
                                text=BertConfig(width=8, heads=2, layers=1, mlp_dim=8, max_positions=8, max_length=8,
                                                cross_width=8), parts=("decoder",)))
    with pytest.raises(clipblip.ClipBlipError, match="caption decoder is not exported"):
        export_onnx(captioner, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_cli_converts_to_onnx(tmp_path, capsys):
    out = tmp_path / "blip-itm"
    assert main(["convert", "shapes-blip", str(out), "--to", "onnx", "--parts", "vision", "itm", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["format"] == "onnx"
    assert sorted(p.name for p in out.iterdir()) == ["itm.onnx", "onnx_config.json", "tokenizer.json", "vision.onnx"]
    assert main(["convert", "shapes-clip", str(tmp_path / "x"), "--to", "hf", "--parts", "vision"]) == EXIT_ERROR
    assert capsys.readouterr().err == ("clipblip: error: --parts vision is not a part --to hf exports: pick from "
                                       "encoder, decoder, itc, itm\n")


def test_cli_without_onnx_names_the_extra_in_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # what `import onnx` meets where it is not installed
    assert main(["convert", "shapes-clip", str(tmp_path / "out"), "--to", "onnx"]) == EXIT_ERROR
    assert capsys.readouterr().err == f"clipblip: error: {ONNX_EXTRA}\n"
    assert ONNX_EXTRA == "ONNX export needs the onnx extra: pip install 'clipblip[onnx]'"
    assert not (tmp_path / "out").exists()


# ---- the README's example --------------------------------------------------------------------------------------
def readme_onnx_blocks() -> tuple[str, str]:
    """The ```bash and ```python blocks of the README's "### ONNX" section."""
    text = README.read_text()
    section = text[text.index("\n### ONNX\n"):]
    section = section[: re.search(r"\n#{2,3} ", section[1:]).start() + 1]
    return (re.search(r"```bash\n(.*?)```", section, re.S).group(1),
            re.search(r"```python\n(.*?)```", section, re.S).group(1))


NO_TORCH = """import json, sys
sys.modules["torch"] = sys.modules["clipblip"] = None  # importing either now fails
scope = {"__name__": "__main__"}
exec(compile(open(sys.argv[1]).read(), "README.md", "exec"), scope)
assert not any(m.split(".")[0] in ("torch", "clipblip") for m, v in sys.modules.items() if v is not None)
json.dump(scope["probs"].tolist(), open(sys.argv[2], "w"))
"""


def draw_demo_images(folder: Path) -> None:
    """The two images of `make demo` the example names (src/clipblip/demo.py draws them so)."""
    from PIL import Image, ImageDraw

    folder.mkdir(parents=True)
    for color, shape, method in (("red", "circle", "ellipse"), ("blue", "square", "rectangle")):
        img = Image.new("RGB", (96, 96), "white")
        getattr(ImageDraw.Draw(img), method)((24, 24, 72, 72), fill=color)
        img.save(folder / f"{color}_{shape}.png")


def test_readme_example_scores_like_classify_without_torch(tmp_path, monkeypatch, capsys):
    bash, python = readme_onnx_blocks()
    monkeypatch.chdir(tmp_path)
    draw_demo_images(tmp_path / "runs/demo/images")
    argv = shlex.split(bash, comments=True)
    assert argv[0].endswith("clipblip") and main(argv[1:]) == 0
    (tmp_path / "example.py").write_text(python)
    (tmp_path / "no_torch.py").write_text(NO_TORCH)
    done = subprocess.run([sys.executable, "no_torch.py", "example.py", "probs.json"], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    probs = np.array(json.loads((tmp_path / "probs.json").read_text()))
    images = ["runs/demo/images/red_circle.png", "runs/demo/images/blue_square.png"]
    texts = ["a red circle", "a blue square", "a green triangle"]
    assert re.search(r"images = \[(.*)\]", python).group(1) == ", ".join(f'"{p}"' for p in images)
    assert re.search(r"texts = \[(.*)\]", python).group(1) == ", ".join(f'"{t}"' for t in texts)
    model = clipblip.load("shapes-clip", device="cpu", precision="fp32")
    ranked = clipblip.classify(model, images, texts, templates=["{}"], top_k=len(texts))
    want = np.array([[dict(row)[t] for t in texts] for row in ranked])
    assert probs.shape == (2, 3) and np.abs(probs - want).max() <= TOL
    assert np.abs(want - 1 / 3).max() > 0.1  # the probabilities say something, so agreeing is not trivial
