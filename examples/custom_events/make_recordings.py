"""Write an event-camera dataset the way a camera user hands one over: a .zip of Prophesee EVT 2.0 .raw
recordings (one per gesture, 32x32 sensor, geometry in each header) plus labels.csv (file,label).

    python examples/custom_events/make_recordings.py [OUT.zip]   (default: examples/custom_events/gestures.zip)

The recordings come from the fabric's seeded DVS simulator (a blob moving right/left/up/down/in circles),
written with expelliarmus's EVT 2.0 encoder, so the archive is the same on every machine. Swap in your
own camera's .raw/.dat files (or x, y, t, p .npy arrays) and list them in labels.csv.
"""

from __future__ import annotations

import sys
from pathlib import Path

from fabric.data.eventfiles import write_event_archive
from fabric.data.events import GESTURE_CLASSES, generate_gestures


def main(out: str | None = None) -> Path:
    es, y = generate_gestures(240, seed=11)
    path = Path(out or Path(__file__).with_name("gestures.zip"))
    write_event_archive(path, es, [GESTURE_CLASSES[v] for v in y], fmt="evt2")
    print(f"wrote {path}: {len(es)} EVT 2.0 recordings, {sum(map(len, es.events))} events, labels.csv")
    return path


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
