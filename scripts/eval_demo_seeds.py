"""Run ``vadindex demo`` on several held-out scene seeds and summarise its metrics.

The demo's own seed (7) is one draw of 20 videos; this runs the same pipeline (scenes, index with
``vadindex-tiny``, queries, detect, evaluation) on more seeds that training never used, so the
figures in the README come with their spread. The last line printed is one JSON object.

    python scripts/eval_demo_seeds.py                     # seeds 7..12
    python scripts/eval_demo_seeds.py --seeds 7 8 9 --keep out/demo-seeds
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vadindex.demo import (
    run_demo,  # noqa: E402
    synth,  # noqa: E402
)

METRICS = ("video_f1", "segment_f1", "precision_at_5", "frame_auc", "frame_ap")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=list(range(synth.DEMO_SEED, synth.DEMO_SEED + 6)))
    ap.add_argument("--keep", type=Path, default=None, help="keep each seed's demo output under this folder")
    args = ap.parse_args()
    logging.getLogger("vadindex").setLevel(logging.ERROR)
    bad = [s for s in args.seeds if s >= synth.TRAIN_SEED_START]
    if bad:
        raise SystemExit(f"seeds {bad} are training seeds (>= {synth.TRAIN_SEED_START}); pick held-out ones")
    root = args.keep or Path(tempfile.mkdtemp(prefix="demo_seeds_"))
    rows = []
    try:
        for seed in args.seeds:
            t = time.perf_counter()
            res = run_demo(root / f"seed{seed}", seed=seed)
            m = {k: res.metrics[k] for k in METRICS}
            rows.append({"seed": seed, **m, "seconds": round(time.perf_counter() - t, 1)})
            print(
                f"seed {seed}: "
                + "  ".join(f"{k} {v:.3f}" for k, v in m.items())
                + f"  ({rows[-1]['seconds']} s)",
                flush=True,
            )
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    summary = {
        k: {
            "mean": round(float(np.mean([r[k] for r in rows])), 4),
            "min": round(float(np.min([r[k] for r in rows])), 4),
        }
        for k in METRICS
    }
    for k, v in summary.items():
        print(f"{k}: mean {v['mean']:.3f}, min {v['min']:.3f}")
    print(json.dumps({"bench": "demo_seeds", "seeds": args.seeds, "summary": summary, "runs": rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
