"""Multi-node placement on one machine: the session cluster is a head (CPUs, no boards) plus worker
nodes that each advertise the device kinds they host (tests/integration/conftest.py NODE_GROUPS)."""

from __future__ import annotations

import numpy as np
import ray

from actors.cluster.pool import DevicePool, pool_status
from fabric.model.snn import LifMLP, export_nir
from tests.integration.conftest import NODE_GROUPS


def _nodes_by_kind() -> dict[str, set[str]]:
    """kind -> ids of the alive nodes that advertise it."""
    out: dict[str, set[str]] = {}
    for n in ray.nodes():
        if n["Alive"]:
            for k in n["Resources"]:
                out.setdefault(k, set()).add(n["NodeID"])
    return out


def test_head_advertises_no_boards_and_each_kind_lives_on_one_worker(ray_session):
    by_kind = _nodes_by_kind()
    head = {n["NodeID"] for n in ray.nodes() if n["Alive"] and "node:__internal_head__" in n["Resources"]}
    assert len(head) == 1
    assert len([n for n in ray.nodes() if n["Alive"]]) == 1 + len(NODE_GROUPS)
    for group in NODE_GROUPS.values():
        owners = {next(iter(by_kind[k])) for k in group}
        assert all(len(by_kind[k]) == 1 for k in group)
        assert len(owners) == 1 and not owners & head  # one worker node per group, never the head


def test_device_actors_land_on_the_node_that_owns_their_kind(ray_session):
    by_kind = _nodes_by_kind()
    g = export_nir(LifMLP(8, [8], 3, 0.9, 1.0))
    x = [np.random.default_rng(i).integers(0, 2, (2, 6, 8)).astype(np.uint8) for i in range(4)]
    seen_nodes = set()
    for kind in ("loihi", "akida", "spinnaker", "fpga", "dynapse"):
        pool = DevicePool(kind)
        res = pool.run(pool.compile(g), x)
        assert len(res) == 4 and all(r.counts.shape == (2, 3) for r in res)
        for h in pool.health():
            assert h["node_id"] in by_kind[kind], f"{kind} actor on {h['node_id']}, owners {by_kind[kind]}"
            seen_nodes.add(h["node_id"])
    assert len(seen_nodes) == len(NODE_GROUPS)  # the kinds really are spread over different nodes
    status = pool_status(["loihi", "akida", "spinnaker", "fpga", "dynapse"])
    assert {s["kind"] for s in status} == {"loihi", "akida", "spinnaker", "fpga", "dynapse"}
    assert all(s["node_id"] in by_kind[s["kind"]] and s["healthy"] and not s["drained"] for s in status)
    assert sum(s["calls"] for s in status) >= 5 * 4
