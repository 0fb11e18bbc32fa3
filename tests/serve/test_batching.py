"""Concurrent requests share a model call, and get what they would have got one at a time."""

import asyncio
import threading

import pytest
import torch

from clipblip.serve.batching import Batcher, QueueFull


def _run_concurrently(fns):
    out = [None] * len(fns)
    threads = [threading.Thread(target=lambda i=i, f=f: out.__setitem__(i, f())) for i, f in enumerate(fns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def test_batcher_groups_by_key_and_keeps_order():
    calls = []

    def run(key, items):
        calls.append((key, list(items)))
        return [(key, x * 10) for x in items]

    async def main():
        b = Batcher(run, max_batch=4, wait_s=0.2)
        jobs = [b.submit(("a",), [1, 2]), b.submit(("b",), [3]), b.submit(("a",), [4, 5, 6])]
        results = await asyncio.gather(*jobs)
        b.close()
        return results, b.batch_sizes

    results, sizes = asyncio.run(main())
    assert results == [[(("a",), 10), (("a",), 20)], [(("b",), 30)], [(("a",), 40), (("a",), 50), (("a",), 60)]]
    # "a" items fill a batch of max_batch=4, the rest of "a" and the "b" item go in batches of their own
    assert sorted((k[0], len(items)) for k, items in calls) == [("a", 1), ("a", 4), ("b", 1)]
    assert sizes == {"a": {4: 1, 1: 1}, "b": {1: 1}}


def test_batcher_isolates_a_failing_item_and_bounds_its_queue():
    def run(key, items):
        if "bad" in items:
            raise ValueError("bad item")
        return [x.upper() for x in items]

    async def main():
        b = Batcher(run, max_batch=8, wait_s=0.2, max_queue=3)
        jobs = [asyncio.ensure_future(b.submit(("t",), [x])) for x in ("ok", "bad", "fine")]
        await asyncio.sleep(0.02)  # all three queued, the worker still waiting for more
        with pytest.raises(QueueFull):
            await b.submit(("t",), ["one too many"])
        results = await asyncio.gather(*jobs, return_exceptions=True)
        b.close()
        return results

    ok, bad, fine = asyncio.run(main())
    assert ok == ["OK"] and fine == ["FINE"] and isinstance(bad, ValueError)


def test_concurrent_requests_share_a_batch_with_the_same_results(client, uploads):
    texts = [f"a {c} {s}" for c in ("red", "green", "blue") for s in ("circle", "square")]
    alone = client(max_batch=1)
    want_text = [alone.post("/embed", data={"text": t}).json()["texts"][0] for t in texts]
    want_caption = [alone.post("/caption", files=[("image", u)]).json()["captions"][0] for u in uploads]

    # a long wait window, so that every request lands in the window of the first
    batched = client(max_batch=16, wait_ms=300)
    batched.app.state.service.batcher.arriving = None
    got_text = _run_concurrently([lambda t=t: batched.post("/embed", data={"text": t}) for t in texts])
    got_caption = _run_concurrently([lambda u=u: batched.post("/caption", files=[("image", u)]) for u in uploads])
    assert all(r.status_code == 200 for r in got_text + got_caption)
    sizes = batched.get("/metrics").json()["batch_sizes"]
    assert max(map(int, sizes["embed_text"])) > 1 and max(map(int, sizes["caption"])) > 1
    torch.testing.assert_close(torch.tensor([r.json()["texts"][0] for r in got_text]), torch.tensor(want_text),
                               atol=1e-5, rtol=0)
    assert [r.json()["captions"][0] for r in got_caption] == want_caption


def test_a_lone_request_does_not_wait_out_the_window():
    async def main(arriving):
        b = Batcher(lambda key, items: items, max_batch=8, wait_s=30, arriving=arriving)
        try:
            return await asyncio.wait_for(b.submit(("t",), ["alone"]), timeout=2)
        finally:
            b.wait_s = 0  # let close() finish at once
            b.close()

    assert asyncio.run(main(lambda: 0)) == ["alone"]  # nobody else on the way: run at once
    with pytest.raises(asyncio.TimeoutError):  # without the hint, the 30 s window is waited out
        asyncio.run(main(None))
