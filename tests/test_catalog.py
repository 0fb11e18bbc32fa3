"""The catalog's data agrees with itself and with its sources; resolve() finds cached files and never reaches the
network when it must not. No downloads: the Hub and URL fetches are replaced by fakes."""

import dataclasses
import hashlib
import io
import json
import os
import re
import sys
from pathlib import Path

import pytest

from clipblip import catalog, hub
from clipblip.catalog import ALIASES, ARCHS, CATALOG, Entry
from clipblip.errors import ClipBlipError

# ---- catalog data ------------------------------------------------------------------------------------------------


def test_every_entry_is_well_formed():
    for name, entry in CATALOG.items():
        assert entry.name == name
        assert entry.arch in ARCHS, name
        assert entry.family in catalog.FAMILIES, name
        assert entry.format in catalog.FORMATS, name
        assert entry.files, name
        assert entry.hub_id or entry.url, f"{name}: nowhere to get it from"
        assert ("vision_cfg" in ARCHS[entry.arch]) == (entry.family == "clip"), name
        assert set(entry.preprocess) == {"size", "mean", "std", "interpolation", "resize"}, name
        # the position embedding in the weights is fixed by the arch, so preprocessing must produce that size
        assert entry.preprocess["size"] == catalog.image_size(entry.arch), name
        if entry.sha256 is not None:
            assert re.fullmatch(r"[0-9a-f]{64}", entry.sha256), name


def test_names_are_unique_and_lists_agree():
    assert len(catalog.names()) == len(set(catalog.names())) == len(CATALOG)
    assert sorted(catalog.names("clip") + catalog.names("blip")) == sorted(CATALOG)
    assert not set(ALIASES) & set(CATALOG), "an alias must not shadow a catalog name"
    with pytest.raises(ClipBlipError, match="family"):
        catalog.names("clipp")


def test_aliases_point_at_entries():
    for alias, target in ALIASES.items():
        assert target in CATALOG, alias
        assert catalog.get(alias) is CATALOG[target]
    assert catalog.get("ViT-L/14@336px").name == "ViT-L-14-336/openai"
    assert catalog.get("Salesforce/blip-image-captioning-base").name == "blip-base-caption"


def test_openai_names_all_present():
    # clip.available_models() in openai/CLIP
    openai = ["RN50", "RN101", "RN50x4", "RN50x16", "RN50x64", "ViT-B/32", "ViT-B/16", "ViT-L/14", "ViT-L/14@336px"]
    assert all(catalog.get(n).name.endswith("/openai") for n in openai)


def test_openai_sha256_matches_the_hash_in_the_url():
    openai = [e for e in CATALOG.values() if e.name.endswith("/openai")]
    assert len(openai) == 9
    for entry in openai:
        assert entry.url.startswith("https://openaipublic.azureedge.net/clip/models/"), entry.name
        assert entry.sha256 == entry.url.split("/")[-2], entry.name


def test_openai_weights_use_quickgelu_and_laion_ones_gelu():
    for entry in CATALOG.values():
        if entry.name.endswith("/openai"):
            assert ARCHS[entry.arch].get("quick_gelu") is True, entry.name
        elif "laion2b" in entry.name:
            assert not ARCHS[entry.arch].get("quick_gelu"), entry.name


def test_urls_without_hub_name_their_file():
    for entry in CATALOG.values():
        if entry.hub_id is None:
            assert entry.url.rsplit("/", 1)[1] == entry.files[0], entry.name
            assert entry.sha256 is None, f"{entry.name}: Salesforce publishes no checksums"


def test_preprocess_dicts_are_not_shared():
    a, b = CATALOG["ViT-B-32/openai"], CATALOG["ViT-B-16/openai"]
    assert a.preprocess is not b.preprocess and a.preprocess["mean"] is not b.preprocess["mean"]


def test_clip_archs_equal_open_clip_configs():
    pytest.importorskip("open_clip")
    import open_clip

    config_dir = Path(open_clip.__file__).parent / "model_configs"
    for arch, cfg in ARCHS.items():
        if "vision_cfg" in cfg:
            assert cfg == json.loads((config_dir / f"{arch}.json").read_text()), arch


def test_clip_preprocessing_equals_open_clip_pretrained_cfg():
    pytest.importorskip("open_clip")
    from open_clip.pretrained import get_pretrained_cfg

    for entry in CATALOG.values():
        if entry.family != "clip":
            continue
        model, tag = entry.name.split("/")
        cfg = get_pretrained_cfg(model, tag)
        assert cfg, entry.name
        assert cfg["hf_hub"].rstrip("/") == entry.hub_id, entry.name
        assert bool(cfg.get("quick_gelu")) == bool(ARCHS[entry.arch].get("quick_gelu")), entry.name
        assert list(cfg["mean"]) == entry.preprocess["mean"] and list(cfg["std"]) == entry.preprocess["std"]
        assert cfg["interpolation"] == entry.preprocess["interpolation"], entry.name
        assert cfg["resize_mode"] == entry.preprocess["resize"], entry.name
        if entry.url:
            assert cfg["url"] == entry.url, entry.name


def test_blip_base_arch_equals_transformers_blip_defaults():
    # transformers' Blip*Config defaults describe Salesforce/blip-vqa-base, except text heads (default 8; the
    # Salesforce config.json files set 12).
    transformers = pytest.importorskip("transformers")
    vision, text = transformers.BlipVisionConfig(), transformers.BlipTextConfig()
    ours = ARCHS["blip-base-384"]
    assert (ours["vision"]["image_size"], ours["vision"]["patch_size"], ours["vision"]["width"],
            ours["vision"]["layers"], ours["vision"]["heads"]) == (
        vision.image_size, vision.patch_size, vision.hidden_size, vision.num_hidden_layers,
        vision.num_attention_heads)
    assert ours["vision"]["width"] * ours["vision"]["mlp_ratio"] == vision.intermediate_size
    t = ours["text"]
    assert (t["vocab_size"], t["width"], t["layers"], t["intermediate_size"], t["max_position_embeddings"],
            t["eps"], t["encoder_width"], t["bos_token_id"], t["sep_token_id"], t["pad_token_id"]) == (
        text.vocab_size, text.hidden_size, text.num_hidden_layers, text.intermediate_size,
        text.max_position_embeddings, text.layer_norm_eps, text.encoder_hidden_size, text.bos_token_id,
        text.sep_token_id, text.pad_token_id)
    assert ours["embed_dim"] == transformers.BlipConfig().image_text_hidden_size
    for entry in CATALOG.values():
        if entry.format == "hf_blip":  # every transformers conversion is at 384
            assert entry.preprocess["size"] == vision.image_size, entry.name


def test_get_on_a_typo_suggests_the_right_name():
    with pytest.raises(ClipBlipError) as info:
        catalog.get("ViT-B-32/opnai")
    message = str(info.value)
    assert "'ViT-B-32/openai'" in message and "clipblip models" in message
    with pytest.raises(ClipBlipError, match="blip-base-caption"):
        catalog.get("blip-base-captoin")


@pytest.mark.parametrize("typo, meant", [("shapes-blp", "shapes-blip"), ("Shapes-CLIP", "shapes-clip"),
                                         ("shapes_blip_vqa", "shapes-blip-vqa")])
def test_a_typo_of_an_embedded_name_suggests_it(typo, meant):
    with pytest.raises(ClipBlipError) as info:
        catalog.get(typo)
    assert f"Did you mean '{meant}'" in str(info.value)


def test_get_ignores_case_only_differences():
    assert catalog.get("vit-b-32/OPENAI") is CATALOG["ViT-B-32/openai"]


# ---- resolve: a fake Hugging Face cache ----------------------------------------------------------------------------

FAKE = Entry(name="fake/one", family="clip", arch="ViT-B-32", hub_id="some-org/some-model",
             files=("open_clip_model.safetensors", "open_clip_config.json"), format="open_clip",
             preprocess=catalog._preprocess("ViT-B-32", "shortest"))


def _snapshot(root: Path, commit: str, files=FAKE.files, ref: bool = True) -> Path:
    repo = root / "models--some-org--some-model"
    snap = repo / "snapshots" / commit
    snap.mkdir(parents=True)
    for name in files:
        (snap / name).write_text(f"{commit}:{name}")
    if ref:
        (repo / "refs").mkdir(exist_ok=True)
        (repo / "refs" / "main").write_text(commit + "\n")
    return snap


@pytest.fixture
def no_network(monkeypatch):
    """Any call to the Hub fails the test."""
    huggingface_hub = pytest.importorskip("huggingface_hub")

    def refuse(*args, **kwargs):
        pytest.fail(f"hf_hub_download called: {args} {kwargs}")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", refuse)


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    root = tmp_path / "hub"
    root.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(root))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    return root


def test_hf_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    assert hub.hf_cache_dir() == Path.home() / ".cache" / "huggingface" / "hub"
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    assert hub.hf_cache_dir() == tmp_path / "home" / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "direct"))
    assert hub.hf_cache_dir() == tmp_path / "direct"


def test_resolve_finds_the_snapshot_named_by_refs_main(hf_cache, no_network):
    _snapshot(hf_cache, "aaaa", ref=False)
    wanted = _snapshot(hf_cache, "bbbb")
    os.utime(hf_cache / "models--some-org--some-model/snapshots/aaaa", (4e9, 4e9))  # newer, but not on main
    assert hub.resolve(FAKE, offline=True) == wanted
    assert (wanted / FAKE.files[0]).read_text() == "bbbb:open_clip_model.safetensors"


def test_resolve_falls_back_to_a_complete_snapshot_without_refs(hf_cache, no_network):
    _snapshot(hf_cache, "partial", files=FAKE.files[:1], ref=False)
    complete = _snapshot(hf_cache, "complete", ref=False)
    assert hub.resolve(FAKE, offline=True) == complete


def test_resolve_ignores_a_dangling_symlink(hf_cache, no_network):
    snap = _snapshot(hf_cache, "cccc", files=FAKE.files[1:])
    (snap / FAKE.files[0]).symlink_to(hf_cache / "blobs-that-do-not-exist")
    with pytest.raises(ClipBlipError):
        hub.resolve(FAKE, offline=True)


def test_resolve_takes_cache_dir_over_the_environment(tmp_path, hf_cache, no_network):
    other = tmp_path / "elsewhere"
    wanted = _snapshot(other, "dddd")
    assert hub.resolve(FAKE, cache_dir=other, offline=True) == wanted


@pytest.mark.parametrize("var", ["HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"])
def test_offline_and_not_cached_fails_without_network(hf_cache, no_network, monkeypatch, var):
    monkeypatch.setenv(var, "1")
    with pytest.raises(ClipBlipError) as info:
        hub.resolve(FAKE)  # offline comes from the environment
    message = str(info.value)
    assert "some-org/some-model" in message and "open_clip_model.safetensors" in message
    assert "clipblip.load(" in message


def test_online_and_not_cached_downloads_each_file(hf_cache, monkeypatch):
    huggingface_hub = pytest.importorskip("huggingface_hub")
    calls = []

    def fake_download(repo_id, filename, cache_dir=None, **kwargs):
        calls.append((repo_id, filename))
        snap = Path(cache_dir) / "models--some-org--some-model" / "snapshots" / "eeee"
        snap.mkdir(parents=True, exist_ok=True)
        (snap / filename).write_text("downloaded")
        return str(snap / filename)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    got = hub.resolve(FAKE, offline=False)
    assert calls == [("some-org/some-model", name) for name in FAKE.files]
    assert got == hf_cache / "models--some-org--some-model" / "snapshots" / "eeee"
    assert (got / FAKE.files[1]).read_text() == "downloaded"


def test_a_failed_download_becomes_a_clipblip_error(hf_cache, monkeypatch):
    huggingface_hub = pytest.importorskip("huggingface_hub")

    def broken(*args, **kwargs):
        raise ConnectionError("Name or service not known")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", broken)
    with pytest.raises(ClipBlipError, match="Name or service not known") as info:
        hub.resolve(FAKE, offline=False)
    assert "some-org/some-model" in str(info.value) and "clipblip.load(" in str(info.value)


def test_missing_huggingface_hub_says_how_to_install_it(hf_cache, monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # makes the import fail
    with pytest.raises(ClipBlipError, match=r"clipblip\[hub\]"):
        hub.resolve(FAKE, offline=False)


# ---- resolve: entries that are only a URL ------------------------------------------------------------------------

URL_ENTRY = Entry(name="blip/fake", family="blip", arch="blip-base", hub_id=None, files=("fake.pth",),
                  format="blip_original", preprocess=catalog._preprocess("blip-base", "squash"),
                  url="https://example.invalid/fake.pth")


class _FakeResponse(io.BytesIO):
    headers = {"Content-Length": "7"}


def test_url_entry_is_found_in_the_cache_offline(tmp_path, monkeypatch):
    monkeypatch.setattr(hub.urllib.request, "urlopen", lambda *a, **k: pytest.fail("network used"))
    (tmp_path / "fake.pth").write_bytes(b"weights")
    assert hub.resolve(URL_ENTRY, cache_dir=tmp_path, offline=True) == tmp_path / "fake.pth"
    with pytest.raises(ClipBlipError, match="example.invalid"):
        hub.resolve(URL_ENTRY, cache_dir=tmp_path / "empty", offline=True)


def test_url_download_checks_sha256_and_keeps_only_good_files(tmp_path, monkeypatch):
    monkeypatch.setattr(hub.urllib.request, "urlopen", lambda *a, **k: _FakeResponse(b"weights"))
    wrong = "a7fb4f0a8a4a4a4e1c1cc19b3d2f7b3b41c1f76c0b0a9ed7f5bcd4e2f1ef1e39"  # not the hash of b"weights"
    bad_entry = dataclasses.replace(URL_ENTRY, sha256=wrong)
    with pytest.raises(ClipBlipError, match="sha256"):
        hub.resolve(bad_entry, cache_dir=tmp_path, offline=False)
    assert list(tmp_path.iterdir()) == []

    ok_entry = dataclasses.replace(URL_ENTRY, sha256=hashlib.sha256(b"weights").hexdigest())
    path = hub.resolve(ok_entry, cache_dir=tmp_path, offline=False)
    assert path == tmp_path / "fake.pth" and path.read_bytes() == b"weights"


def test_a_url_download_records_the_sha256_of_what_was_kept(tmp_path, monkeypatch):
    # Salesforce publishes no checksum for BLIP's .pth files: the record is what a later load can name
    monkeypatch.setattr(hub.urllib.request, "urlopen", lambda *a, **k: _FakeResponse(b"weights"))
    assert URL_ENTRY.sha256 is None
    path = hub.resolve(URL_ENTRY, cache_dir=tmp_path, offline=False)
    expected = hashlib.sha256(b"weights").hexdigest()
    assert (tmp_path / "fake.pth.sha256").read_text() == f"{expected}  fake.pth\n"  # `sha256sum -c` reads it
    assert hub.recorded_sha256(path) == expected
    assert hub.resolve(URL_ENTRY, cache_dir=tmp_path, offline=True) == path  # the record is not a weights file


def _hub_download_of(content: bytes, blob_name: str):
    """A fake hf_hub_download laying files out as huggingface_hub does: snapshot links into blobs/<etag>."""
    def fake_download(repo_id, filename, cache_dir=None, **kwargs):
        repo = Path(cache_dir) / "models--some-org--some-model"
        blob = repo / "blobs" / (blob_name if filename == FAKE.files[0] else f"git-{filename}")
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(content)
        link = repo / "snapshots" / "ffff" / filename
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
        return str(link)

    return fake_download


def test_a_hub_file_is_checked_against_the_sha256_its_blob_is_named_by(hf_cache, monkeypatch):
    huggingface_hub = pytest.importorskip("huggingface_hub")
    good = hashlib.sha256(b"weights").hexdigest()
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", _hub_download_of(b"weights", good))
    snapshot = hub.resolve(FAKE, offline=False)
    assert hub.recorded_sha256(snapshot / FAKE.files[0]) == good
    assert hub.recorded_sha256(snapshot / FAKE.files[1]) is None  # kept in git, not LFS: no sha256 to name


def test_a_hub_file_whose_content_is_not_its_sha256_is_removed(hf_cache, monkeypatch):
    huggingface_hub = pytest.importorskip("huggingface_hub")
    claimed = hashlib.sha256(b"the published weights").hexdigest()
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", _hub_download_of(b"tampered", claimed))
    with pytest.raises(ClipBlipError, match=f"has sha256 {hashlib.sha256(b'tampered').hexdigest()}, expected "
                                            f"{claimed}") as info:
        hub.resolve(FAKE, offline=False)
    assert "\n" not in str(info.value)
    repo = hf_cache / "models--some-org--some-model"
    assert not (repo / "blobs" / claimed).exists() and not (repo / "snapshots" / "ffff" / FAKE.files[0]).exists()
    assert hub.cached_snapshot(hf_cache, FAKE.hub_id, FAKE.files) is None
