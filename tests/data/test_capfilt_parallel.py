"""CapFilt decodes and preprocesses in `CapFiltConfig.workers` threads: its output is the one decoding in the
calling thread writes, byte for byte, rejects in input order; the thread count is no setting of a resumed run."""

import json
import threading

import pytest
import torch
from PIL import Image

import clipblip
from clipblip.data.capfilt import capfilt
from clipblip.jobs import THREAD_PREFIX
from clipblip.tasks.capfilt import CapFiltConfig

OUTPUTS = ("captions.jsonl", "rejects.jsonl", "summary.json")


@pytest.fixture(scope="module")
def web(tmp_path_factory):
    """11 records (as a list: a dataset file would drop the one without caption): 9 random pictures with a
    caption, a corrupt image (the 3rd) and a picture without caption (the 8th)."""
    d = tmp_path_factory.mktemp("web")
    g = torch.Generator().manual_seed(1)
    records = []
    for i in range(11):
        path = d / f"{i:02d}.jpg"
        if i == 2:
            path.write_bytes(b"\xff\xd8\xff\xe0 cut short")
        else:
            Image.fromarray(torch.randint(0, 256, (40 + i, 50, 3), generator=g, dtype=torch.uint8).numpy()).save(path)
        records.append({"id": f"r{i}", "image": str(path), **({} if i == 7 else {"caption": f"a picture {i}"})})
    return records


@pytest.mark.parametrize("n_synthetic", [1, 0])
def test_workers_write_what_one_thread_writes(web, tiny_blip_dir, tmp_path, n_synthetic):
    captioner, filt = clipblip.load(tiny_blip_dir), clipblip.load(tiny_blip_dir)  # two models: two preprocessings
    out = {}
    for workers in (0, 3):
        cfg = CapFiltConfig(n_synthetic=n_synthetic, part_size=4, batch_size=2, workers=workers)
        capfilt(web, tmp_path / str(workers), captioner, filt, cfg, progress=False)
        out[workers] = [(tmp_path / str(workers) / name).read_bytes() for name in OUTPUTS]
    assert out[0] == out[3]
    rejects = [json.loads(line)["id"] for line in out[3][1].decode().splitlines()]
    assert rejects == (["r2"] if n_synthetic else ["r2", "r7"])
    assert not [t for t in threading.enumerate() if t.name.startswith(THREAD_PREFIX)]


def test_a_run_resumes_with_another_number_of_workers(web, tiny_blip_dir, tmp_path):
    blip = clipblip.load(tiny_blip_dir)
    first = capfilt(web, tmp_path, blip, cfg=CapFiltConfig(part_size=4, batch_size=2, workers=0), progress=False)
    (tmp_path / "parts" / "part-000001.json").unlink()
    again = capfilt(web, tmp_path, blip, cfg=CapFiltConfig(part_size=4, batch_size=2, workers=2), progress=False)
    assert again == first and "workers" not in again["settings"]
