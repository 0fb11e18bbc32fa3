"""Decoding in a thread pool (tasks.inputs.ordered_map / pixel_batches): the same batches, pixels and skipped
items as decoding in the calling thread, whatever order the threads finish in; bounded read-ahead; no thread
left running after the consumer stops, fails or is interrupted."""

import json
import signal
import threading
import time

import pytest
import torch
from PIL import Image

import clipblip
from clipblip import ClipBlipError
from clipblip.image import load_image
from clipblip.jobs import THREAD_PREFIX, Skipped, ordered_map
from clipblip.tasks.inputs import PREFETCH_BATCHES, image_features, pixel_batches


def _pool_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(THREAD_PREFIX)]


@pytest.fixture(autouse=True)
def _no_threads_before():
    assert not _pool_threads()


@pytest.fixture(scope="module")
def model(tiny_clip_dir):
    return clipblip.load(tiny_clip_dir)


@pytest.fixture(scope="module")
def pictures(tmp_path_factory) -> list:
    """24 images of different sizes, contents and formats (JPEG and PNG)."""
    d = tmp_path_factory.mktemp("pictures")
    g = torch.Generator().manual_seed(0)
    paths = []
    for i in range(24):
        w, h = 30 + 7 * i, 70 - 2 * i
        pixels = torch.randint(0, 256, (h, w, 3), generator=g, dtype=torch.uint8).numpy()
        path = d / f"{i:02d}.{'png' if i % 3 else 'jpg'}"
        Image.fromarray(pixels).save(path)
        paths.append(path)
    return paths


class Uneven:
    """A model's preprocess that first sleeps, longer for earlier items: later items finish first in a pool."""

    def __init__(self, pre, delays: dict):
        self.pre, self.delays, self.calls, self.lock = pre, delays, 0, threading.Lock()

    def uint8(self, image):  # what a decoding thread runs
        time.sleep(self.delays.get(str(image), 0.0))
        out = self.pre.uint8(image)
        with self.lock:
            self.calls += 1
        return out

    def normalize(self, pixels):
        return self.pre.normalize(pixels)


@pytest.fixture
def uneven(model, pictures):
    """The model, its preprocess slowed down per item (items 0, 5, 10... slowest)."""
    plain = model.preprocess
    model.preprocess = Uneven(plain, {str(p): 0.002 * (5 - i % 5) for i, p in enumerate(pictures)})
    yield model
    model.preprocess = plain


def _batches(model, items, **kw) -> list[tuple[list[int], torch.Tensor]]:
    return list(pixel_batches(model, items, **kw))


def test_many_workers_give_the_batches_of_one_thread_in_order(uneven, pictures):
    one = _batches(uneven, pictures, batch_size=5, workers=0)
    many = _batches(uneven, pictures, batch_size=5, workers=8)
    assert [idx for idx, _ in many] == [list(range(s, min(s + 5, 24))) for s in range(0, 24, 5)]
    assert [idx for idx, _ in one] == [idx for idx, _ in many]
    for (idx, a), (_, b) in zip(one, many):
        assert torch.equal(a, b)
        # and what preprocessing the batch in one call gives (the path before the pool)
        assert torch.equal(b, uneven.preprocess.pre([pictures[i] for i in idx]))


def test_bad_items_in_the_middle_are_skipped_and_listed_in_input_order(uneven, pictures, tmp_path):
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 not a whole JPEG")
    missing = tmp_path / "missing.png"
    # the corrupt file is slow, the missing one fast: in a pool the second bad item fails first
    uneven.preprocess.delays.update({str(corrupt): 0.05, str(missing): 0.0})
    items = pictures[:3] + [corrupt] + pictures[3:9] + [missing] + pictures[9:12]
    results = {}
    for workers in (0, 4):
        skipped = Skipped()
        batches = _batches(uneven, items, batch_size=4, skip_bad=True, skipped=skipped, workers=workers)
        results[workers] = batches, skipped.items
    reasons = []
    for bad in (corrupt, missing):
        with pytest.raises(ClipBlipError) as e:
            load_image(bad)
        reasons.append((str(bad), str(e.value)))
    assert results[4][1] == results[0][1] == reasons
    assert [idx for idx, _ in results[4][0]] == [[0, 1, 2], [4, 5, 6, 7], [8, 9, 11], [12, 13]]
    assert all(torch.equal(a, b) for (_, a), (_, b) in zip(results[0][0], results[4][0]))


def test_without_skip_bad_the_first_bad_item_in_input_order_raises(uneven, pictures, tmp_path):
    first, second = tmp_path / "first.jpg", tmp_path / "second.jpg"
    first.write_bytes(b"not an image")
    second.write_bytes(b"not an image either")
    uneven.preprocess.delays.update({str(first): 0.2, str(second): 0.0})
    items = pictures[:2] + [first, second] + pictures[2:10]
    with pytest.raises(ClipBlipError, match="first.jpg"):
        _batches(uneven, items, batch_size=3, workers=4)
    assert not _pool_threads()


def test_image_features_are_bit_identical_to_decoding_in_the_calling_thread(model, pictures, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n cut short")
    items = pictures[:7] + [broken] + pictures[7:]
    feats0, kept0, skipped0 = image_features(model, items, batch_size=4, skip_bad=True, workers=0)
    feats3, kept3, skipped3 = image_features(model, items, batch_size=4, skip_bad=True, workers=3)
    assert torch.equal(feats0, feats3) and kept0 == kept3 == [i for i in range(25) if i != 7]
    assert skipped0.items == skipped3.items and [s for s, _ in skipped3.items] == [str(broken)]
    # the default (None) is a pool too, and a generator is read like a list
    feats, kept, _ = image_features(model, iter(items), batch_size=4, skip_bad=True)
    assert torch.equal(feats, feats0) and kept == kept0


def test_one_lazily_opened_pil_image_passed_several_times_is_loaded_once_at_a_time(model, tmp_path):
    g = torch.Generator().manual_seed(2)
    paths = []
    for i in range(8):  # big enough that two threads loading one file at once collide
        paths.append(tmp_path / f"{i}.jpg")
        Image.fromarray(torch.randint(0, 256, (480, 640, 3), generator=g, dtype=torch.uint8).numpy()).save(paths[-1])
    opened = [Image.open(p) for p in paths]  # lazy: nothing decoded yet
    items = [im for im in opened for _ in range(3)]
    (_, pixels), = _batches(model, items, batch_size=len(items), workers=4)
    assert torch.equal(pixels, model.preprocess([p for p in paths for _ in range(3)]))


def test_a_generator_is_read_at_most_the_prefetch_ahead_of_the_consumer(uneven, pictures):
    pulled = []

    def source():
        for p in pictures:
            pulled.append(p)
            yield p

    bs, workers = 3, 2
    ahead = max(PREFETCH_BATCHES * bs, 2 * workers)
    batches = pixel_batches(uneven, source(), batch_size=bs, workers=workers)
    got = []
    for b, (idx, pixels) in enumerate(batches, 1):
        # the items of the batch after next have been asked for, and none beyond
        assert len(pulled) == min(len(pictures), b * bs + ahead)
        deadline = time.monotonic() + 10
        while uneven.preprocess.calls < len(pulled) and time.monotonic() < deadline:
            time.sleep(0.005)  # the pool decodes ahead while the consumer waits
        assert uneven.preprocess.calls == len(pulled)
        got.append((idx, pixels))
    assert got[-1][0] == [21, 22, 23]
    assert all(torch.equal(a, b) for (_, a), (_, b) in zip(got, _batches(uneven, pictures, batch_size=bs, workers=0)))


def test_an_exception_in_the_consumer_leaves_no_thread_running(model, pictures, monkeypatch):
    seen = []

    def fail(pixels):
        seen.append(len(_pool_threads()))
        raise RuntimeError("the model fails")

    monkeypatch.setattr(model, "encode_image", fail)
    with pytest.raises(RuntimeError, match="the model fails"):
        image_features(model, pictures, batch_size=2, workers=3)
    assert len(seen) == 1 and seen[0] >= 1  # the pool was running when the consumer failed
    assert not _pool_threads()


def test_closing_the_generator_midway_stops_the_threads(model, pictures):
    batches = pixel_batches(model, pictures, batch_size=2, workers=3)
    next(batches)
    assert _pool_threads()  # (a pool starts a thread per task until one is idle: 1 to 3 of them)
    batches.close()
    assert not _pool_threads()


def test_ctrl_c_while_waiting_for_a_decode_stops_the_threads():
    main = threading.main_thread().ident

    def work(i):
        if i == 0:
            time.sleep(0.5)  # the consumer blocks on item 0 ...
        if i == 1:
            time.sleep(0.1)  # (the first tasks are submitted by then)
            signal.pthread_kill(main, signal.SIGINT)  # ... when Ctrl-C arrives
        return i

    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            for _ in ordered_map(work, range(100), 4, 8):
                pass
    finally:
        signal.signal(signal.SIGINT, old)
    assert not _pool_threads()


def test_ordered_map_keeps_order_and_raises_at_the_failing_item():
    def work(i):
        time.sleep(0.001 * ((7 * i) % 5))
        if i == 13:
            raise ValueError("thirteen")
        return i * i

    assert list(ordered_map(work, range(13), 5, 4)) == [i * i for i in range(13)]
    got = []
    with pytest.raises(ValueError, match="thirteen"):
        for v in ordered_map(work, range(40), 5, 4):
            got.append(v)
    assert got == [i * i for i in range(13)]
    assert not _pool_threads()


def test_benchmark_decodes_the_first_n_readable_records_of_a_file(tiny_clip_dir, pictures, tmp_path):
    from clipblip.eval import benchmark

    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 nothing")
    images = pictures[:2] + [broken] + pictures[2:8]
    data = tmp_path / "data.jsonl"
    rows = [{"id": f"r{i}", "image": str(p), "captions": [f"picture {i}", f"image {i}"]} for i, p in enumerate(images)]
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    clip = clipblip.load(tiny_clip_dir)
    ids = {}
    for workers in (0, 3):
        _, extras = benchmark.run(clip, data=str(data), n=5, workers=workers, progress=False)
        recs = extras["data"]["test"]
        ids[workers] = [r["id"] for r in recs]
        assert all(r["image"].tobytes() == Image.open(images[int(r["id"][1:])]).convert("RGB").tobytes()
                   for r in recs)
    assert ids[0] == ids[3] == ["r0", "r1", "r3", "r4", "r5"]
    assert not _pool_threads()
