"""The index builder reads, decodes and preprocesses images in a thread pool: the index it makes is the one
decoding in the calling thread makes, byte for byte, bad images listed the same."""

import threading

from index_helpers import rows

from clipblip.index import build
from clipblip.jobs import THREAD_PREFIX


def test_workers_build_the_index_of_one_thread(shapes, tmp_path):
    (shapes / "0004.png").write_bytes(b"\x89PNG\r\n\x1a\n cut short")  # a bad image among good ones
    texts = tmp_path / "texts.txt"
    texts.write_text("a red circle\na blue square\n")
    reports = {}
    for workers in (0, 4):
        # batches of 4 over 21 images and 2 texts: the last batch mixes one image with the texts
        reports[workers] = build(shapes, tmp_path / f"ix{workers}", "shapes-clip", texts=texts, batch_size=4,
                                 workers=workers)
    assert reports[0].to_dict() == reports[4].to_dict()
    assert (reports[4].count, reports[4].embedded) == (21, 21)
    assert reports[0].skipped.items == reports[4].skipped.items
    assert [item.rsplit("/", 1)[-1] for item, _ in reports[4].skipped.items] == ["0004.png", "broken.png"]
    one, many = rows(tmp_path / "ix0"), rows(tmp_path / "ix4")
    assert len(many) == 21 and one == many  # ids, keys, sizes, hashes, metadata and vector bytes
    assert not [t for t in threading.enumerate() if t.name.startswith(THREAD_PREFIX)]
