"""The device and precision rule (clipblip/runtime.py), the models that carry it, and the command-line flags."""

import pytest
import torch

import clipblip
from clipblip import runtime
from clipblip.cli import EXIT_ERROR, EXIT_PARTIAL, main
from clipblip.errors import ClipBlipError

AMX = frozenset({"avx2", "avx512f", "amx_bf16", "amx_tile", "avx512_bf16"})
ZEN1 = frozenset({"avx2", "fma", "sse4_2"})


@pytest.fixture
def no_env(monkeypatch):
    """The rule as a user sees it: the suite's own CLIPBLIP_DEVICE / CLIPBLIP_PRECISION pins removed."""
    monkeypatch.delenv("CLIPBLIP_DEVICE", raising=False)
    monkeypatch.delenv("CLIPBLIP_PRECISION", raising=False)


@pytest.mark.parametrize("flags, expected", [(AMX, "bf16"), (ZEN1, "fp32"), (frozenset({"avx512_bf16"}), "bf16"),
                                             (frozenset(), "fp32")])
def test_auto_precision_on_the_cpu_follows_the_cpu_flags(monkeypatch, no_env, flags, expected):
    monkeypatch.setattr(runtime, "cpu_flags", lambda: flags)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    rt = runtime.resolve()
    assert (rt.device.type, rt.precision) == ("cpu", expected)


def test_auto_prefers_cuda_and_bf16_there(monkeypatch, no_env):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert runtime.resolve() == runtime.Runtime(torch.device("cuda"), "bf16")
    assert runtime.resolve("cuda:1", "fp16") == runtime.Runtime(torch.device("cuda", 1), "fp16")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)  # e.g. a V100
    assert runtime.resolve().precision == "fp16"
    with pytest.raises(ClipBlipError, match="2 CUDA GPU.*cuda:0 to cuda:1"):
        runtime.resolve("cuda:2")
    with pytest.raises(ClipBlipError, match="int8 runs on the CPU only"):
        runtime.resolve("cuda", "int8")


def test_the_cpu_flags_are_read_from_the_kernel():
    flags = runtime.cpu_flags()
    text = open("/proc/cpuinfo").read()
    assert ("avx2" in flags) == (" avx2" in text) and ("amx_bf16" in flags) == (" amx_bf16" in text)


@pytest.mark.parametrize("device, precision, message", [
    ("cuda", "auto", "no CUDA GPU here.*--device cpu"),
    ("meta", "auto", "unsupported device 'meta'"),
    ("tpu", "auto", "unknown device 'tpu'"),
    ("gpu0", "auto", "unknown device 'gpu0'"),
    ("cpu", "fp16", "fp16 needs a GPU.*bf16, int8 or fp32"),
    ("cpu", "fp64", "unknown precision 'fp64'"),
])
def test_bad_settings_are_one_line_errors_that_say_what_is_there(monkeypatch, device, precision, message):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ClipBlipError, match=message):
        runtime.resolve(device, precision)


def test_environment_replaces_auto_only(monkeypatch):
    monkeypatch.setenv("CLIPBLIP_PRECISION", "int8")
    assert runtime.resolve("cpu").precision == "int8"
    assert runtime.resolve("cpu", "bf16").precision == "bf16"  # an explicit choice wins
    assert "$CLIPBLIP_PRECISION=int8" in runtime.describe()


@pytest.mark.parametrize("precision, dtype", [("fp32", torch.float32), ("bf16", torch.bfloat16),
                                              ("int8", torch.float32)])
def test_loaded_models_know_their_precision_and_return_float32_on_the_cpu(tiny_clip_dir, tiny_blip_dir,
                                                                          image_folder, precision, dtype):
    images = sorted(image_folder.glob("*_*.*"))[:2]
    clip = clipblip.load(tiny_clip_dir, device="cpu", precision=precision)
    assert (clip.device.type, clip.dtype, clip.precision) == ("cpu", dtype, precision)
    feats = clipblip.image_features(clip, images)
    assert feats.dtype == torch.float32 and feats.device.type == "cpu"
    assert clipblip.text_features(clip, ["a red square"]).dtype == torch.float32
    blip = clipblip.load(tiny_blip_dir, device="cpu", precision=precision)
    probs = clipblip.match(blip, images, ["a", "b c"])
    assert probs.dtype == torch.float32 and probs.device.type == "cpu" and probs.shape == (2, 2)
    assert all(isinstance(c, str) for c in clipblip.caption(blip, images, max_new_tokens=4))
    if precision == "int8":  # every Linear layer was quantized, nothing else
        from torch.ao.nn.quantized.dynamic import Linear as Int8Linear

        def count(module, kind):
            return sum(isinstance(m, kind) for m in module.modules())

        fp32 = clipblip.load(tiny_clip_dir, device="cpu", precision="fp32")
        first = count(fp32.visual.blocks[0], torch.nn.Linear)  # the image tower's first block stays float
        assert count(clip.visual.blocks[0], torch.nn.Linear) == first == 4
        assert count(clip, Int8Linear) == count(fp32, torch.nn.Linear) - first
        assert count(clip, torch.nn.Linear) == first


def test_a_bf16_model_saves_as_bf16_and_an_int8_one_refuses(tiny_clip_dir, tmp_path):
    from safetensors import safe_open

    clipblip.save(clipblip.load(tiny_clip_dir, device="cpu", precision="bf16"), tmp_path / "b")
    with safe_open(str(tmp_path / "b" / "model.safetensors"), "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.bfloat16}
    again = clipblip.load(tmp_path / "b", device="cpu", precision="fp32")
    ref = clipblip.load(tiny_clip_dir, device="cpu", precision="bf16")
    for (k, v), w in zip(again.state_dict().items(), ref.state_dict().values()):
        assert torch.equal(v, w.float()), k
    int8 = clipblip.load(tiny_clip_dir, device="cpu", precision="int8")
    with pytest.raises(ClipBlipError, match="cannot save an int8 model.*precision='fp32'"):
        clipblip.save(int8, tmp_path / "i")
    with pytest.raises(ClipBlipError, match="cannot export an int8 model"):
        from clipblip.export import export_hf

        export_hf(int8, tmp_path / "h")


def test_cli_takes_device_and_precision(tiny_clip_dir, image_folder, capsys, monkeypatch):
    import json

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    image = str(sorted(image_folder.glob("*_*.*"))[0])
    args = ["classify", image, "--labels", "a", "b", "-m", str(tiny_clip_dir), "--json", "--device", "cpu"]
    probs = {}
    for precision in ("fp32", "bf16", "int8"):
        assert main([*args, "--precision", precision]) == 0
        probs[precision] = json.loads(capsys.readouterr().out)["results"][0]["labels"][0]["prob"]
    assert abs(probs["bf16"] - probs["fp32"]) < 0.02 and abs(probs["int8"] - probs["fp32"]) < 0.02
    assert probs["bf16"] != probs["fp32"]  # the flag reached the model
    assert main([*args, "--precision", "fp16"]) == EXIT_ERROR
    assert "fp16 needs a GPU" in capsys.readouterr().err
    assert main(["caption", image, "-m", str(tiny_clip_dir), "--device", "cuda"]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no CUDA GPU" in err


@pytest.mark.parametrize("command", [["embed", "--images", "x", "-o", "y.npy"], ["classify", "x"],
                                     ["search", "q", "--images", "x"],
                                     ["caption", "x"], ["ask", "x", "q"], ["match", "x", "t"], ["score", "x", "p"],
                                     ["rerank", "p", "x"], ["guide", "p", "-o", "x.png"], ["compare"],
                                     ["index", "build", "x", "-o", "y"], ["index", "add", "x", "y"],
                                     ["index", "search", "x", "q"], ["serve"],
                                     ["capfilt", "--data", "x", "--out", "y"]])
def test_every_model_command_has_the_runtime_flags(command):
    from clipblip.cli import parser

    args = parser().parse_args([*command, "--device", "cpu", "--precision", "int8"])
    assert (args.device, args.precision) == ("cpu", "int8")


def test_version_says_what_auto_is(capsys, no_env):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"clipblip {clipblip.__version__}") and f"auto: {runtime.resolve()}" in out


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_cuda_models_give_the_cpu_results(tiny_clip_dir, tiny_blip_dir, image_folder, precision):
    images = sorted(image_folder.glob("*_*.*"))[:3]
    ref = clipblip.image_features(clipblip.load(tiny_clip_dir, device="cpu", precision="fp32"), images)
    gpu = clipblip.load(tiny_clip_dir, device="cuda", precision=precision)
    feats = clipblip.image_features(gpu, images)
    assert feats.device.type == "cpu" and feats.dtype == torch.float32
    assert torch.nn.functional.cosine_similarity(feats, ref).min() > (0.9999 if precision == "fp32" else 0.99)
    blip = clipblip.load(tiny_blip_dir, device="cuda", precision=precision)
    assert clipblip.match(blip, images, ["a"]).device.type == "cpu"


def test_convert_keeps_the_weights_whatever_auto_picks(tiny_clip_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("CLIPBLIP_PRECISION", "bf16")  # as auto is on a CPU with AMX
    assert main(["convert", str(tiny_clip_dir), str(tmp_path / "out")]) == 0
    ref, out = (clipblip.load(d, device="cpu", precision="fp32") for d in (tiny_clip_dir, tmp_path / "out"))
    assert all(torch.equal(v, out.state_dict()[k]) for k, v in ref.state_dict().items())


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_compare_index_and_score_run_at_low_precision(tmp_path, image_folder, capsys, precision):
    import json

    flags = ["--device", "cpu", "--precision", precision]
    assert main(["compare", "--n", "8", "--out", str(tmp_path / "cmp"), "--json", *flags]) == 0
    meta = json.loads((tmp_path / "cmp" / "results.json").read_text())["meta"]
    assert f"cpu at {precision}" in meta["machine"]
    images = [str(p) for p in sorted(image_folder.glob("*_*.*"))[:3]]
    # the folder holds a corrupt image: skipped and listed (exit 3), the rest indexed
    assert main(["index", "build", str(image_folder), "-o", str(tmp_path / "idx"), "--json", *flags]) == EXIT_PARTIAL
    assert main(["index", "search", str(tmp_path / "idx"), "a red object", "--rerank", "--json", *flags]) == 0
    assert main(["rerank", "a red object", *images, "--by", "itm", "--json", *flags]) == 0
    capsys.readouterr()
