"""Loading is strict and every failure is a ClipBlipError that names the file and what to do."""

import json

import pytest
import torch
from safetensors.torch import save_file

import clipblip
from clip_refs import OPEN_CLIP_VIT, hf_clip, open_clip_model
from clipblip import ClipBlipError

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.*:DeprecationWarning")  # the archives are made with it


def _hf_dir(tmp_path):
    hf_clip().save_pretrained(tmp_path)
    return tmp_path


def _resave(directory, edit):
    from safetensors.torch import load_file

    sd = load_file(str(directory / "model.safetensors"))
    edit(sd)
    save_file(sd, str(directory / "model.safetensors"))


def test_missing_key_is_named(tmp_path):
    d = _hf_dir(tmp_path)
    _resave(d, lambda sd: sd.pop("text_model.final_layer_norm.weight"))
    with pytest.raises(ClipBlipError, match=r"missing \(1\): text\.norm\.weight"):
        clipblip.load(d)


def test_unexpected_key_is_named(tmp_path):
    d = _hf_dir(tmp_path)
    _resave(d, lambda sd: sd.__setitem__("vision_model.extra.weight", torch.zeros(2)))
    with pytest.raises(ClipBlipError, match=r"unexpected \(1\): vision_model\.extra\.weight"):
        clipblip.load(d)


def test_wrong_shape_is_named(tmp_path):
    d = _hf_dir(tmp_path)
    _resave(d, lambda sd: sd.__setitem__("text_projection.weight", torch.zeros(8, 32)))
    with pytest.raises(ClipBlipError, match=r"wrong shape .*text\.proj\.weight"):
        clipblip.load(d)


def test_open_clip_file_without_config_asks_for_arch(tmp_path):
    ref = open_clip_model(OPEN_CLIP_VIT, quick_gelu=False)
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(tmp_path / "weights.safetensors"))
    with pytest.raises(ClipBlipError, match="arch="):
        clipblip.load(tmp_path / "weights.safetensors")


def test_arch_that_does_not_match_the_weights(tmp_path, monkeypatch):
    from clipblip import catalog

    ref = open_clip_model(OPEN_CLIP_VIT, quick_gelu=False)
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(tmp_path / "weights.safetensors"))
    wrong = {"embed_dim": 16, "vision_cfg": {**OPEN_CLIP_VIT, "layers": 3},
             "text_cfg": {"width": 32, "heads": 4, "layers": 2}}
    monkeypatch.setitem(catalog.ARCHS, "tiny-wrong", wrong)
    with pytest.raises(ClipBlipError, match=r"vision\.layers: config 3 vs weights 2"):
        clipblip.load(tmp_path / "weights.safetensors", arch="tiny-wrong")


def test_arch_names_a_known_config(tmp_path, monkeypatch):
    from clipblip import catalog

    ref = open_clip_model(OPEN_CLIP_VIT, quick_gelu=False)
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(tmp_path / "weights.safetensors"))
    tiny = {"embed_dim": 16, "vision_cfg": OPEN_CLIP_VIT, "text_cfg": {"width": 32, "heads": 4, "layers": 2}}
    monkeypatch.setitem(catalog.ARCHS, "tiny", tiny)
    assert clipblip.load(tmp_path / "weights.safetensors", arch="tiny").config.vision.act == "gelu"
    with pytest.raises(ClipBlipError, match="unknown architecture"):
        clipblip.load(tmp_path / "weights.safetensors", arch="no-such-arch")


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", b"PK\x03\x04broken zip"])
def test_damaged_files_name_the_file(tmp_path, content):
    path = tmp_path / "broken.pt"
    path.write_bytes(content)
    with pytest.raises(ClipBlipError, match="broken.pt"):
        clipblip.load(path)


def test_unknown_layout(tmp_path):
    torch.save({"encoder.weight": torch.zeros(2)}, tmp_path / "other.bin")
    with pytest.raises(ClipBlipError, match="unknown checkpoint layout"):
        clipblip.load(tmp_path / "other.bin")


def test_wrong_family_config(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ClipBlipError, match="model_type='bert'"):
        clipblip.load(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"family": "dalle"}))
    with pytest.raises(ClipBlipError, match="family 'dalle'"):
        clipblip.load(tmp_path)


def test_hf_weights_file_alone_points_at_the_directory(tmp_path):
    d = _hf_dir(tmp_path)
    with pytest.raises(ClipBlipError, match="pass the directory"):
        clipblip.load(d / "model.safetensors")


def test_empty_directory(tmp_path):
    with pytest.raises(ClipBlipError, match="not a checkpoint directory"):
        clipblip.load(tmp_path)


def test_text_without_end_token(tmp_path):
    model = clipblip.load(_hf_dir(tmp_path))
    with pytest.raises(ClipBlipError, match="no end-of-text"):
        model.encode_text(torch.tensor([[49406, 320, 321]]))


# ---- TorchScript archives are data: their tensors are read, their code never runs ---------------------------------
# Hostile archives are made here, at test time, from a module torch saves and a pickle written by hand.


class _Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(3, 2)
        self.weight16 = torch.nn.Parameter(torch.randn(4, 6).half())
        self.register_buffer("input_resolution", torch.tensor(32))
        self.register_buffer("weight16_t", self.weight16.detach().t())  # a strided view of another tensor's storage
        self.blocks = torch.nn.Sequential(torch.nn.LayerNorm(2), torch.nn.LayerNorm(2))
        self.sizes = [3, 4]  # a plain list attribute: scripted modules pickle it with torch.jit._pickle helpers

    def forward(self, x):
        return self.blocks(self.proj(x)) * self.sizes[0]


def _archive(tmp_path, name="tiny.pt", script=False):
    module = torch.jit.script(_Tiny()) if script else torch.jit.trace(_Tiny(), torch.randn(1, 3))
    module.save(str(tmp_path / name))
    return tmp_path / name


@pytest.mark.parametrize("script", [False, True])
def test_torchscript_tensors_equal_what_torch_jit_load_gives(tmp_path, script):
    from clipblip.convert import torchscript

    path = _archive(tmp_path, script=script)
    expected = torch.jit.load(str(path), map_location="cpu").state_dict()
    got = torchscript.read_tensors(path)
    assert list(got) == list(expected)
    for key, value in expected.items():
        assert got[key].dtype == value.dtype and got[key].stride() == value.stride(), key
        assert torch.equal(got[key], value), key


def _with_data_pkl(tmp_path, payload: bytes):
    """A real archive whose data.pkl is replaced by `payload`."""
    import zipfile

    src, out = _archive(tmp_path, "good.pt"), tmp_path / "hostile.pt"
    with zipfile.ZipFile(src) as z, zipfile.ZipFile(out, "w") as w:
        for info in z.infolist():
            w.writestr(info, payload if info.filename.endswith("/data.pkl") else z.read(info))
    return out


def _call(module: str, name: str, *args) -> bytes:
    """A protocol-2 pickle (as TorchScript writes) whose GLOBAL is `module name`, called with `args` when loaded."""
    import pickle

    return b"\x80\x02" + f"c{module}\n{name}\n".encode() + pickle.dumps(args, protocol=2)[2:-1] + b"R."


@pytest.mark.parametrize("how", ["os.system", "builtins.eval", "torch.from_file"])
def test_a_pickle_that_calls_a_forbidden_global_is_refused_and_runs_nothing(tmp_path, how):
    import pickle

    def payload(marker):
        return {"os.system": lambda: _call("os", "system", f"touch {marker}"),
                "builtins.eval": lambda: _call("builtins", "eval", f"open({str(marker)!r}, 'w').close()"),
                "torch.from_file": lambda: _call("torch", "from_file", str(marker), True, 16)}[how]()

    proof = tmp_path / "proof"
    pickle.loads(payload(proof))  # what a plain unpickler does with it
    assert proof.exists()
    marker = tmp_path / "marker"
    path = _with_data_pkl(tmp_path, payload(marker))
    with pytest.raises(ClipBlipError) as info:
        clipblip.load(path)
    message = str(info.value)
    assert "\n" not in message and "hostile.pt" in message and f"refused: its pickle calls {how}" in message
    assert not marker.exists()


class _Planted(torch.nn.Module):
    """OpenAI-shaped enough to be read; its __setstate__, run by torch.jit.load, maps (and so creates) a file."""

    def __init__(self, target: str):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(2))
        self.target = target

    def forward(self, x):
        return x * self.w

    @torch.jit.export
    def __getstate__(self) -> tuple[torch.Tensor, str, bool]:
        return self.w, self.target, self.training

    @torch.jit.export
    def __setstate__(self, state: tuple[torch.Tensor, str, bool]) -> None:
        self.target = state[1]
        self.training = state[2]
        mapped = torch.from_file(self.target, shared=True, size=2)  # used below, or TorchScript drops the call
        self.w = state[0] + mapped * 0


def test_code_in_a_torchscript_archive_never_runs(tmp_path):
    marker = tmp_path / "marker"
    torch.jit.script(_Planted(str(marker))).save(str(tmp_path / "planted.pt"))
    with pytest.raises(ClipBlipError, match="planted.pt"):
        clipblip.load(tmp_path / "planted.pt")
    assert not marker.exists()


@pytest.mark.parametrize("damage, reason", [("compressed", "compressed"), ("truncated", "shorter than")])
def test_a_damaged_torchscript_archive_names_the_file_and_the_fault(tmp_path, damage, reason):
    import zipfile

    src, out = _archive(tmp_path, "good.pt"), tmp_path / "damaged.pt"
    with zipfile.ZipFile(src) as z, zipfile.ZipFile(out, "w") as w:
        for info in z.infolist():
            data, storage = z.read(info), "/data/" in info.filename
            if damage == "compressed" and storage:  # a deflated member could inflate far past the file's size
                info.compress_type = zipfile.ZIP_DEFLATED
            w.writestr(info, data[: len(data) // 2] if damage == "truncated" and storage else data)
    with pytest.raises(ClipBlipError, match=f"damaged.pt.*{reason}"):
        clipblip.load(out)
