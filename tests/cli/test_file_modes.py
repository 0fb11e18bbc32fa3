"""Files clipblip writes get the mode the process's umask gives any new file: embeddings, native weights and Hugging
Face exports too (safetensors' own writer made them 0600 whatever the umask, unreadable to a group sharing them)."""

import os

import pytest

import clipblip
from clipblip.cli import main
from clipblip.export import export_hf


@pytest.fixture(params=[0o022, 0o027])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def test_embeddings_weights_and_exports_get_the_umask(tmp_path, umask, tiny_clip_dir):
    assert main(["embed", "--texts", "a red circle", "-o", str(tmp_path / "texts.safetensors"),
                 "-m", str(tiny_clip_dir)]) == 0
    model = clipblip.load(tiny_clip_dir)
    clipblip.save(model, tmp_path / "native")
    export_hf(model, tmp_path / "hf")
    modes = {str(f.relative_to(tmp_path)): oct(f.stat().st_mode & 0o777) for f in tmp_path.rglob("*") if f.is_file()}
    assert {"texts.safetensors", "native/model.safetensors", "hf/model.safetensors"} <= set(modes)
    assert modes == dict.fromkeys(modes, oct(0o666 & ~umask))
