"""Prometheus text exposition (format 0.0.4) of the ingress counters, without a client library.

Serving latency is measured; device latency and energy are modelled (see ``serve._private.kpi``).
"""

from __future__ import annotations

import bisect
from collections import defaultdict

__all__ = ["Metrics", "LATENCY_BUCKETS_MS"]

LATENCY_BUCKETS_MS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0)


class _Histogram:
    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * len(buckets)
        self.sum = 0.0
        self.count = 0

    def observe(self, v: float) -> None:
        i = bisect.bisect_left(self.buckets, v)
        if i < len(self.counts):
            self.counts[i] += 1
        self.sum += v
        self.count += 1


def _esc(v: str) -> str:
    return str(v).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(**kw: str) -> str:
    return "{" + ",".join(f'{k}="{_esc(v)}"' for k, v in kw.items()) + "}"


class Metrics:
    """Counters and histograms keyed by version; ``render()`` gives the /metrics body."""

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, str], int] = defaultdict(int)  # (endpoint, status, version)
        self.serving: dict[str, _Histogram] = {}
        self.device: dict[str, _Histogram] = {}
        self.energy_mj: dict[str, float] = defaultdict(float)
        self.inferences: dict[str, int] = defaultdict(int)
        self.shadow: dict[tuple[str, str], int] = defaultdict(int)
        self.rollbacks: dict[str, int] = defaultdict(int)
        self.ran_on: dict[tuple[str, str], int] = defaultdict(int)  # (version, kind) requests answered
        self.spills: dict[tuple[str, str], int] = defaultdict(int)  # (from kind, to kind) spilled requests
        self.wakes: dict[str, int] = defaultdict(int)  # kind -> requests that woke a sleeping board
        self.wake_ms: dict[str, float] = defaultdict(float)  # kind -> modelled wake latency paid
        self.boards: dict[str, dict[str, float]] = {}  # kind -> SleepState.snapshot(), set before render

    def request(self, endpoint: str, status: int, version: str = "") -> None:
        self.requests[(endpoint, str(status), version)] += 1

    def served(self, version: str, serving_ms: float, device_ms: float, energy_mj_total: float, samples: int) -> None:
        self.serving.setdefault(version, _Histogram(LATENCY_BUCKETS_MS)).observe(serving_ms)
        self.device.setdefault(version, _Histogram(LATENCY_BUCKETS_MS)).observe(device_ms)
        self.energy_mj[version] += energy_mj_total
        self.inferences[version] += samples

    def render(self) -> str:
        out: list[str] = []

        def hist(name: str, help_: str, hs: dict[str, _Histogram]) -> None:
            out.extend([f"# HELP {name} {help_}", f"# TYPE {name} histogram"])
            for ver, h in sorted(hs.items()):
                cum = 0
                for b, c in zip(h.buckets, h.counts, strict=True):
                    cum += c
                    out.append(f"{name}_bucket{_labels(version=ver, le=f'{b:g}')} {cum}")
                out.append(f"{name}_bucket{_labels(version=ver, le='+Inf')} {h.count}")
                out.append(f"{name}_sum{_labels(version=ver)} {h.sum:.6g}")
                out.append(f"{name}_count{_labels(version=ver)} {h.count}")

        out += ["# HELP fabric_serve_requests_total HTTP requests by endpoint, status code and model version.",
                "# TYPE fabric_serve_requests_total counter"]
        for (ep, st, ver), n in sorted(self.requests.items()):
            out.append(f"fabric_serve_requests_total{_labels(endpoint=ep, status=st, version=ver)} {n}")
        hist("fabric_serve_latency_ms", "Measured serving latency per request in milliseconds (ingress wall time).",
             self.serving)
        hist("fabric_serve_device_latency_ms", "Modelled device time per inference in milliseconds (emulated "
             "kinds: actors/<kind>/constants.yaml timing constants; cpu: measured).", self.device)
        out += ["# HELP fabric_serve_energy_mj_total Modelled device energy in millijoules (actors/<kind>/constants.yaml).",
                "# TYPE fabric_serve_energy_mj_total counter"]
        out += [f"fabric_serve_energy_mj_total{_labels(version=v)} {e:.6g}" for v, e in sorted(self.energy_mj.items())]
        out += ["# HELP fabric_serve_inferences_total Samples inferred.", "# TYPE fabric_serve_inferences_total counter"]
        out += [f"fabric_serve_inferences_total{_labels(version=v)} {n}" for v, n in sorted(self.inferences.items())]
        out += ["# HELP fabric_serve_shadow_requests_total Shadow copies by version and outcome.",
                "# TYPE fabric_serve_shadow_requests_total counter"]
        out += [f"fabric_serve_shadow_requests_total{_labels(version=v, outcome=o)} {n}"
                for (v, o), n in sorted(self.shadow.items())]
        out += ["# HELP fabric_serve_rollbacks_total Rollbacks by version.", "# TYPE fabric_serve_rollbacks_total counter"]
        out += [f"fabric_serve_rollbacks_total{_labels(version=v)} {n}" for v, n in sorted(self.rollbacks.items())]
        out += ["# HELP fabric_serve_ran_on_total Requests answered, by version and the kind they ran on.",
                "# TYPE fabric_serve_ran_on_total counter"]
        out += [f"fabric_serve_ran_on_total{_labels(version=v, kind=k)} {n}" for (v, k), n in sorted(self.ran_on.items())]
        out += ["# HELP fabric_serve_spills_total Requests sent past a breaking SLO to an overflow kind.",
                "# TYPE fabric_serve_spills_total counter"]
        out += [f"fabric_serve_spills_total{_labels(**{'from': a, 'to': b})} {n}" for (a, b), n in sorted(self.spills.items())]
        out += ["# HELP fabric_serve_wakes_total Requests that woke a sleeping board (modelled sleep state).",
                "# TYPE fabric_serve_wakes_total counter"]
        out += [f"fabric_serve_wakes_total{_labels(kind=k)} {n}" for k, n in sorted(self.wakes.items())]
        out += ["# HELP fabric_serve_wake_latency_ms_total Modelled wake latency added to first requests "
                "(actors/<kind>/constants.yaml t_wake_s).", "# TYPE fabric_serve_wake_latency_ms_total counter"]
        out += [f"fabric_serve_wake_latency_ms_total{_labels(kind=k)} {ms:.6g}" for k, ms in sorted(self.wake_ms.items())]
        out += ["# HELP fabric_serve_board_asleep 1 while the board is in its modelled sleep state.",
                "# TYPE fabric_serve_board_asleep gauge"]
        out += [f"fabric_serve_board_asleep{_labels(kind=k)} {int(b['state'] == 'asleep')}"
                for k, b in sorted(self.boards.items())]
        out += ["# HELP fabric_serve_board_energy_mj_total Modelled board energy outside inferences: idle awake "
                "(p_idle_w x idle time) and asleep (p_sleep_w x sleep time).",
                "# TYPE fabric_serve_board_energy_mj_total counter"]
        for k, b in sorted(self.boards.items()):
            out.append(f"fabric_serve_board_energy_mj_total{_labels(kind=k, state='idle')} {b['idle_energy_mj']:.6g}")
            out.append(f"fabric_serve_board_energy_mj_total{_labels(kind=k, state='asleep')} {b['sleep_energy_mj']:.6g}")
        out += ["# HELP fabric_serve_board_sleep_seconds_total Modelled time boards spent asleep.",
                "# TYPE fabric_serve_board_sleep_seconds_total counter"]
        out += [f"fabric_serve_board_sleep_seconds_total{_labels(kind=k)} {b['sleep_s']:.6g}"
                for k, b in sorted(self.boards.items())]
        return "\n".join(out) + "\n"
