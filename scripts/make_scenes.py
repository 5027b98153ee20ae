"""Generate a synthetic surveillance scene set (videos, manifest.csv, annotations.txt, scenes.json).

With ``--feeds N``, generate N long fixed-camera feeds instead: ``--minutes`` each at 640x360, mostly
an empty scene, with activity in about ``--activity`` of the frames and one annotated anomaly each
(what a camera records at night; ``scripts/bench_gate.py`` builds over them).

    python scripts/make_scenes.py --out scenes/ --seed 7
    python scripts/make_scenes.py --out feeds/ --feeds 2 --minutes 30 --activity 0.05 --workers 2
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vadindex.demo import synth  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument(
        "--seed",
        type=int,
        default=synth.DEMO_SEED,
        help=f"scene-set seed (demo/held-out: {synth.DEMO_SEED}; training: {synth.TRAIN_SEED_START}+)",
    )
    p.add_argument("--n-normal", type=int, default=10)
    p.add_argument("--n-anomaly", type=int, default=10)
    p.add_argument("--classes", nargs="+", default=list(synth.EVENT_CLASSES), choices=synth.EVENT_CLASSES)
    p.add_argument("--fps", type=int, default=synth.DEFAULT_FPS)
    p.add_argument("--width", type=int, default=synth.DEFAULT_SIZE[0])
    p.add_argument("--height", type=int, default=synth.DEFAULT_SIZE[1])
    p.add_argument("--workers", type=int, default=1, help="rendering processes")
    p.add_argument("--feeds", type=int, default=0, help="generate this many long idle feeds instead")
    p.add_argument("--minutes", type=float, default=synth.FEED_MINUTES, help="length of each feed")
    p.add_argument(
        "--activity", type=float, default=synth.FEED_ACTIVITY, help="fraction of a feed with activity"
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Generate the scene set and print a one-line summary."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    t0 = time.time()
    if args.feeds:
        s = synth.generate_feeds(
            args.out,
            args.seed,
            args.feeds,
            minutes=args.minutes,
            activity=args.activity,
            workers=args.workers,
        )
        print(f"{len(s.videos)} feeds of {args.minutes:g} min in {s.root} in {time.time() - t0:.1f}s")
        return 0
    s = synth.generate_scenes(
        args.out,
        seed=args.seed,
        n_normal=args.n_normal,
        n_anomaly=args.n_anomaly,
        classes=args.classes,
        fps=args.fps,
        size=(args.width, args.height),
        workers=args.workers,
    )
    dur = sum(v.duration_s for v in s.videos)
    print(
        f"{len(s.videos)} videos ({dur:.0f} s of footage) in {s.root} in {time.time() - t0:.1f}s: "
        f"{s.manifest_path.name}, {s.annotations_path.name}, {s.scenes_json_path.name}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
