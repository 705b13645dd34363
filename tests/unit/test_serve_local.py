"""The in-ingress fast path (placement ``ingress``): natural micro-batching and placement resolution. No Ray."""

from __future__ import annotations

import asyncio
import threading

import pytest

from serve._private.factory import resolve_placement
from serve._private.local import MicroBatcher
from tests.unit.test_serve_app import lineage  # noqa: F401, F811  (a fixture)


def test_one_caller_is_never_held_back_and_many_share_batches():
    calls: list[int] = []
    gate = threading.Event()

    def fn(items):
        calls.append(len(items))
        gate.wait(2)  # the first batch runs while the others queue up
        return [i * 10 for i in items]

    async def main():
        b = MicroBatcher(fn, max_batch_size=4)
        first = asyncio.create_task(b.submit(0))
        await asyncio.sleep(0.05)  # the first batch (one item) has started: no wait for company
        assert calls == [1]
        rest = [asyncio.create_task(b.submit(i)) for i in range(1, 7)]
        await asyncio.sleep(0.05)
        gate.set()
        out = await asyncio.gather(first, *rest)
        return out, b

    out, b = asyncio.run(main())
    assert out == [i * 10 for i in range(7)]  # each caller gets its own answer, in order
    assert calls == [1, 4, 2]  # queued callers batched, capped at max_batch_size
    assert b.batches == 3 and b.largest == 4


def test_a_failing_batch_fails_each_of_its_callers_and_the_next_batch_runs():
    n = [0]

    def fn(items):
        n[0] += 1
        if n[0] == 1:
            raise RuntimeError("device fell over")
        return list(items)

    async def main():
        b = MicroBatcher(fn, max_batch_size=8)
        with pytest.raises(RuntimeError, match="device fell over"):
            await b.submit(1)
        return await b.submit(2)

    assert asyncio.run(main()) == 2


def test_placement_auto_picks_the_ingress_only_for_kinds_without_a_device():
    assert resolve_placement("cpu", "auto", 1) == "ingress"
    assert resolve_placement("cpu", "auto", 2) == "replica"
    assert resolve_placement("loihi", "auto", 1) == "pool"
    assert resolve_placement("loihi", "replica", 1) == "replica"
    with pytest.raises(ValueError, match="placement: 'ingress' .* 'loihi'"):
        resolve_placement("loihi", "ingress", 1)
    with pytest.raises(ValueError, match="placement: must be one of"):
        resolve_placement("cpu", "nowhere", 1)
    with pytest.raises(ValueError, match="max_batch_size"):
        MicroBatcher(list, 0)


def test_an_ingress_placed_version_answers_and_comes_back_after_an_ingress_restart(lineage):  # noqa: F811
    import json

    import numpy as np
    from fastapi.testclient import TestClient

    from serve import ModelServer
    from serve._private.ingress import Ingress, build_app
    from serve._private.local import LocalHandle

    reg = lineage["reg"]
    server = ModelServer(reg.store.url, lineage["progs"]["loihi"])
    ing = Ingress(app="local", store=reg.store.url, tenant=None, token="t")
    ing.register("v1", server.info, LocalHandle(server), model_id=lineage["progs"]["loihi"], placement="ingress")
    x = (np.random.default_rng(1).random((2, server.info.encoder["timesteps"], server.info.n_in)) < 0.3).astype(np.uint8)
    with TestClient(build_app(ing)) as c:
        r = c.post("/v1/predict", content=json.dumps({"spikes": x.tolist()}), headers={"content-type": "application/json"})
        assert r.status_code == 200, r.text
        assert [p["class"] for p in r.json()["predictions"]] == server.infer([x])[0]["classes"]
        assert c.get("/readyz").status_code == 200
    # a restarted ingress finds no Serve app for it (nothing to find): the version is rebuilt in-process
    again = Ingress(app="local", store=reg.store.url, tenant=None, token="t")
    assert again.restore(lambda app_name: None) == 1
    assert again.state.versions["v1"].placement == "ingress" and isinstance(again.handles["v1"], LocalHandle)
