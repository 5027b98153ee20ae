"""The change gate's sensitivity, swept without encoding anything: which ``--gate-threshold`` keeps which frames.

An index built with ``--gate off`` holds every sampled frame's true embedding. For each threshold,
this script decodes the index's videos again, runs :class:`~vadindex.ingest.gate.ChangeGate` over
their sampled frames, and gives each frame the gate would reuse the true embedding of the last
frame it encoded, as a gated build does. It prints, per index and threshold, the share of frames
encoded (what the encoder would cost) and the cosine of every reused embedding to the frame's own
(min, 1st percentile, mean): the gate's fidelity, for many thresholds in the time of one decode.

``scripts/bench_gate.py --keep`` leaves such indexes (``*-off``) beside the footage it generated:

    python scripts/sweep_gate.py /tmp/gate/demo8/index-off --thresholds 12 9 7 5
    python scripts/sweep_gate.py "/tmp/gate/idle-ViT-B-32 (random, fp32)-off" --thresholds 12 5

Videos are found by the index's stored paths (``--video-root OLD=NEW`` if they moved). The last
line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def image_size(model: str) -> int:
    """The side of the crops the model's image tower sees (the gate sees the same crops)."""
    builtin = Path(__file__).resolve().parents[1] / "vadindex" / "models" / "builtin" / f"{model}.json"
    if builtin.exists():
        return int(json.loads(builtin.read_text(encoding="utf-8"))["vision_cfg"]["image_size"])
    import open_clip

    size = open_clip.get_model_config(model)["vision_cfg"]["image_size"]
    return int(size if isinstance(size, int) else size[0])


def sweep(index: Path, thresholds: list[float], video_root: str | None = None) -> list[dict[str, float]]:
    """Encoded share and reused-embedding cosines of the gate at each threshold over ``index``."""
    from vadindex.index.reader import open_index
    from vadindex.ingest.decode import SampledVideo
    from vadindex.ingest.gate import ChangeGate, GateSettings
    from vadindex.ingest.sources import VideoRoots

    ix = open_index(index)
    if ix.manifest.parts and any(p.gate != "off" for p in ix.manifest.parts):
        raise SystemExit(f"{index}: built with the gate on; sweep an index built with --gate off")
    vectors = np.asarray(ix.frame_vectors(), np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    fps = float(ix.manifest.sampling["fps"])
    size = image_size(ix.manifest.model)
    roots = VideoRoots.parse(video_root)
    paths = ix.videos.set_index("video_id")["path"]
    encoded = {t: 0 for t in thresholds}
    cosines: dict[float, list[float]] = {t: [] for t in thresholds}
    total = 0
    for video_id, rows in ix.segments.groupby("video_id", sort=False):
        start = int(rows["frame_row"].min())
        end = int((rows["frame_row"] + rows["n_frames"]).max())
        path = roots.apply(str(paths.loc[video_id])) if video_root else str(paths.loc[video_id])
        frames = np.concatenate(list(SampledVideo(path, fps=fps, image_size=size).batches()))
        n = min(len(frames), end - start)
        true = vectors[start : start + n]
        total += n
        for t in thresholds:
            gate, last = ChangeGate(GateSettings(threshold=t), fps), 0
            for i in range(n):
                if gate.decide(frames[i]).encode:
                    last = i
                    encoded[t] += 1
                else:
                    cosines[t].append(float(true[i] @ true[last]))
    out = []
    for t in thresholds:
        c = np.array(cosines[t] or [1.0])
        out.append({
            "threshold": t, "frames": total, "encoded": encoded[t], "encoded_fraction": round(encoded[t] / total, 4),
            "reused": len(cosines[t]), "min_cosine": round(float(c.min()), 5),
            "p01_cosine": round(float(np.percentile(c, 1)), 5), "mean_cosine": round(float(c.mean()), 5),
        })  # fmt: skip
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("indexes", type=Path, nargs="+", help="indexes built with --gate off")
    ap.add_argument("--thresholds", type=float, nargs="+", default=[12.0, 9.0, 7.0, 5.0])
    ap.add_argument("--video-root", default=None, help="OLD=NEW: where the videos are now")
    args = ap.parse_args()
    results = {}
    for index in args.indexes:
        results[str(index)] = rows = sweep(index, args.thresholds, args.video_root)
        for r in rows:
            print(
                f"{index}: threshold {r['threshold']:g}: encoded {r['encoded']}/{r['frames']} "
                f"({r['encoded_fraction']:.3f}); reused cosine min {r['min_cosine']:.5f} "
                f"p1 {r['p01_cosine']:.5f} mean {r['mean_cosine']:.5f}",
                flush=True,
            )
    print(json.dumps({"bench": "sweep_gate", "thresholds": args.thresholds, "results": results}))


if __name__ == "__main__":
    main()
