"""Fuzz ingestion: damage real clips in many ways, build an index over them, and check that the
build never crashes or hangs and that the index holds exactly the videos that can be read.

Each variant is a copy of a real clip with one mutation: truncation, random byte flips, a burst
of random bytes, zeroed or shuffled header bytes, damaged container atoms/chunks, a cut-out or
duplicated block. The build runs as ``vadindex build`` in a subprocess (the real CLI, with a wall
clock limit), so a crash or a hang is seen as such; after one, the file in flight is set aside and
the build is resumed. Independently, OpenCV (its own FFmpeg build) decodes every variant, reading
past frames that fail as vadindex does; a video "can be read" when OpenCV reads at least one
segment's worth of it. Videos with the same
fingerprint (a byte flip in the middle of a large file leaves it unchanged) are compared as one.

    python scripts/fuzz_ingest.py --count 200
    python scripts/fuzz_ingest.py --count 40 --max-mb 0.3 --keep /tmp/fuzz

Prints figures per mutation; the last line is one JSON object (tried, indexed, failed, crashes,
hangs, tracebacks, mismatches, seconds).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_VIDEOS = ROOT.parent / "shared" / "data" / "videos"
SEGMENT_SECONDS = 1.0

# --------------------------------------------------------------------------------------------------
# Mutations: (name, function(bytes, rng) -> bytes)
# --------------------------------------------------------------------------------------------------

#: Container structures worth hitting: MP4 atoms and AVI chunks.
MARKERS = (b"moov", b"mdat", b"trak", b"stsz", b"stco", b"stts", b"stss", b"avcC", b"hdlr", b"mvhd",
           b"tkhd", b"RIFF", b"LIST", b"hdrl", b"strh", b"strf", b"movi", b"idx1", b"00dc")  # fmt: skip


def truncate(data: bytes, rng: random.Random) -> bytes:
    return data[: int(len(data) * rng.uniform(0.02, 0.98))]


def truncate_tail(data: bytes, rng: random.Random) -> bytes:
    return data[: len(data) - rng.randint(1, 4096)]


def flip_bytes(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rng.choice((1, 3, 10, 50, 200))):
        out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
    return bytes(out)


def random_burst(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    n = rng.choice((16, 256, 4096, 65536))
    at = rng.randrange(max(len(out) - n, 1))
    out[at : at + n] = rng.randbytes(min(n, len(out) - at))
    return bytes(out)


def header_damage(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    span = min(len(out), rng.choice((16, 64, 512, 4096)))
    if rng.random() < 0.5:
        out[:span] = bytes(span)
    else:
        for _ in range(rng.randint(1, 20)):
            out[rng.randrange(span)] = rng.randrange(256)
    return bytes(out)


def atom_damage(data: bytes, rng: random.Random) -> bytes:
    """Damage a box/chunk header: its size field or its name."""
    out = bytearray(data)
    hits = [i for m in MARKERS for i in _find_all(data, m)]
    if not hits:
        return flip_bytes(data, rng)
    at = rng.choice(hits)
    if rng.random() < 0.5 and at >= 4:
        out[at - 4 : at] = rng.randbytes(4)  # MP4 size field / AVI fourcc before the size
    else:
        out[at : at + 4] = rng.randbytes(4)
    return bytes(out)


def cut_block(data: bytes, rng: random.Random) -> bytes:
    n = rng.choice((100, 4096, 65536))
    at = rng.randrange(max(len(data) - n, 1))
    return data[:at] + data[at + n :]


def duplicate_block(data: bytes, rng: random.Random) -> bytes:
    n = rng.choice((100, 4096, 65536))
    at = rng.randrange(max(len(data) - n, 1))
    return data[: at + n] + data[at : at + n] + data[at + n :]


def _find_all(data: bytes, needle: bytes, limit: int = 64) -> list[int]:
    found, i = [], data.find(needle)
    while i >= 0 and len(found) < limit:
        found.append(i)
        i = data.find(needle, i + 1)
    return found


MUTATIONS: dict[str, Callable[[bytes, random.Random], bytes]] = {
    "truncate": truncate,
    "truncate-tail": truncate_tail,
    "flip-bytes": flip_bytes,
    "random-burst": random_burst,
    "header": header_damage,
    "atom": atom_damage,
    "cut-block": cut_block,
    "duplicate-block": duplicate_block,
}

# --------------------------------------------------------------------------------------------------
# Independent decodability check (OpenCV), in a child process so a crash there is contained
# --------------------------------------------------------------------------------------------------

PROBE = r"""
import json, sys
import cv2
cv2.setNumThreads(1)
for line in sys.stdin:
    path = line.rstrip("\n")
    cap = cv2.VideoCapture(path, cv2.CAP_FFMPEG)
    frames, last_ms, failed_in_a_row = 0, 0.0, 0
    fps = cap.get(cv2.CAP_PROP_FPS) if cap.isOpened() else 0.0
    # Like vadindex, read past frames that fail (up to 500 in a row, then take it as the end).
    while cap.isOpened() and failed_in_a_row < 500 and frames < 200000:
        if not cap.grab():
            failed_in_a_row += 1
            continue
        failed_in_a_row = 0
        frames += 1
        last_ms = cap.get(cv2.CAP_PROP_POS_MSEC)
    cap.release()
    step = 1.0 / fps if 0 < fps < 1000 else 0.04
    # Some demuxers (AVI without an index) report no position: fall back to the frame count.
    seconds = max(last_ms / 1000.0 + step, frames * step) if frames else 0.0
    print(json.dumps({"path": path, "frames": frames, "seconds": seconds}), flush=True)
"""


def probe(paths: list[Path], timeout: float) -> dict[str, dict]:
    """Decode each file with OpenCV; a file that kills or hangs the prober counts as unreadable."""
    results: dict[str, dict] = {}
    todo = [str(p) for p in paths]
    while todo:
        proc = subprocess.Popen([sys.executable, "-c", PROBE], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True)  # fmt: skip
        try:
            out, _ = proc.communicate("\n".join(todo) + "\n", timeout=timeout * len(todo))
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        for line in out.splitlines():
            row = json.loads(line)
            results[row["path"]] = row
        done = [p for p in todo if p in results]
        rest = [p for p in todo if p not in results]
        if rest:  # the prober died or hung on rest[0]
            results[rest[0]] = {"path": rest[0], "frames": 0, "seconds": 0.0, "probe_crash": True}
            rest = rest[1:]
        if not done and not rest:
            break
        todo = rest
    return results


# --------------------------------------------------------------------------------------------------
# The build under test
# --------------------------------------------------------------------------------------------------


def run_build(variants: Path, index: Path, args: argparse.Namespace, log: Path) -> tuple[int | None, str]:
    """One ``vadindex build`` in a subprocess; returns (exit status or None on timeout, stderr)."""
    cmd = [sys.executable, "-m", "vadindex._cli.main", "-v", "build", str(variants), "--index", str(index),
           "--model", args.model, "--pretrained", args.pretrained, "--device", "cpu", "--commit-every", "1",
           "--video-timeout", str(args.video_timeout), "--stall-timeout", str(args.video_timeout),
           "--no-progress", "--format", "json"]  # fmt: skip
    with open(log, "w") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, cwd=ROOT)
        try:
            code: int | None = proc.wait(timeout=args.build_timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            code = None
    return code, log.read_text(errors="replace")


def in_flight(stderr: str) -> str | None:
    """The file the build was ingesting when it died (it logs ``ingesting PATH`` at -v)."""
    lines = [ln.split("ingesting ", 1)[1] for ln in stderr.splitlines() if "ingesting " in ln]
    return lines[-1].strip() if lines else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--videos", type=Path, default=DEFAULT_VIDEOS, help="Folder of real clips to mutate.")
    ap.add_argument("--count", type=int, default=200, help="Number of damaged variants.")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-mb", type=float, default=1.0, help="Use clips up to this size (decoding time).")
    ap.add_argument("--model", default="vadindex-test")
    ap.add_argument("--pretrained", default="random")
    ap.add_argument("--video-timeout", type=float, default=60.0, help="--video-timeout of the build.")
    ap.add_argument("--build-timeout", type=float, default=1800.0, help="Wall-clock limit of one build run.")
    ap.add_argument("--keep", type=Path, default=None, help="Work here and keep the variants and the index.")
    args = ap.parse_args()

    t0 = time.perf_counter()
    rng = random.Random(args.seed)
    clips = sorted(p for p in args.videos.rglob("*") if p.suffix.lower() in (".mp4", ".avi")
                   and p.stat().st_size <= args.max_mb * 1e6)  # fmt: skip
    if not clips:
        print(f"no clips under {args.videos}", file=sys.stderr)
        return 2
    work = args.keep or Path(tempfile.mkdtemp(prefix="vadindex-fuzz-"))
    variants, quarantine, index = work / "variants", work / "quarantine", work / "index"
    for d in (variants, quarantine, index):
        shutil.rmtree(d, ignore_errors=True)
    variants.mkdir(parents=True)
    quarantine.mkdir()
    kinds: dict[str, str] = {}
    names = list(MUTATIONS)
    for i in range(args.count):
        clip, kind = rng.choice(clips), names[i % len(names)]
        data = MUTATIONS[kind](clip.read_bytes(), rng)
        target = variants / f"{i:04d}-{kind}-{clip.stem}{clip.suffix}"
        target.write_bytes(data)
        kinds[target.name] = kind
    print(f"{args.count} variants of {len(clips)} clips (<= {args.max_mb:g} MB) in {variants}")

    sys.path.insert(0, str(ROOT))
    from vadindex.ingest.sources import fingerprint

    t_probe = time.perf_counter()
    readable = probe(sorted(variants.iterdir()), timeout=args.video_timeout)
    t_probe = time.perf_counter() - t_probe

    crashes, hangs, tracebacks, runs = [], [], 0, 0
    t_build = time.perf_counter()
    while True:
        runs += 1
        code, stderr = run_build(variants, index, args, work / f"build-{runs}.log")
        tracebacks += stderr.count("Traceback (most recent call last)")
        if code in (0, 3):
            break
        culprit = in_flight(stderr)
        if code is None:
            hangs.append(culprit)
        elif code != 1 or "Error:" not in stderr:
            crashes.append((culprit, code))
        else:
            print(f"build refused: {stderr.strip().splitlines()[-1]}", file=sys.stderr)
            return 2
        if culprit is None or not Path(culprit).exists() or runs > 50:
            print(f"cannot tell which file stopped the build (exit {code}); see {work}", file=sys.stderr)
            break
        shutil.move(culprit, quarantine / Path(culprit).name)
    t_build = time.perf_counter() - t_build

    import pandas as pd

    manifest = (
        json.loads((index / "manifest.json").read_text()) if (index / "manifest.json").exists() else None
    )
    indexed_ids = set()
    if manifest:
        indexed_ids = set(pd.read_parquet(index / manifest["videos_file"])["video_id"].astype(str))
    failures = pd.read_csv(index / "failures.csv") if (index / "failures.csv").exists() else pd.DataFrame()
    from vadindex.index.check import check_index

    report = check_index(index) if manifest else None

    # Compare by fingerprint: equal fingerprints are one video to the index.
    expected_ids, per_kind, mismatches = set(), Counter(), []
    by_id: dict[str, list[str]] = {}
    for path in sorted(variants.iterdir()):
        vid = fingerprint(path)
        by_id.setdefault(vid, []).append(path.name)
        row = readable.get(str(path), {"seconds": 0.0})
        if row["seconds"] >= SEGMENT_SECONDS:
            expected_ids.add(vid)
    for vid, files in by_id.items():
        got, want = vid in indexed_ids, vid in expected_ids
        kind = kinds[files[0]]
        per_kind[(kind, "tried")] += len(files)
        per_kind[(kind, "indexed")] += int(got)
        if got != want:
            rows = [readable.get(str(variants / f), {}) for f in files]
            mismatches.append(
                {"files": files, "indexed": got, "opencv_seconds": [r.get("seconds") for r in rows]}
            )
            per_kind[(kind, "mismatch")] += 1
    tried = args.count
    n_failed = len(failures)
    print(f"probe (OpenCV) {t_probe:.1f} s; build {t_build:.1f} s in {runs} run(s)")
    print(f"{'mutation':16s} {'tried':>6s} {'indexed':>8s} {'mismatch':>9s}")
    for kind in names:
        print(f"{kind:16s} {per_kind[(kind, 'tried')]:6d} {per_kind[(kind, 'indexed')]:8d} "
              f"{per_kind[(kind, 'mismatch')]:9d}")  # fmt: skip
    print(f"distinct fingerprints {len(by_id)} of {tried} variants; readable by OpenCV {len(expected_ids)}")
    if not failures.empty:
        reasons = Counter(str(r).split(" (")[0].split(":")[0] for r in failures["reason"])
        print("failure reasons: " + "; ".join(f"{n} x {r}" for r, n in reasons.most_common(8)))
    for m in mismatches[:20]:
        print(f"mismatch: {m}")
    for c in crashes:
        print(f"CRASH: {c}")
    for h in hangs:
        print(f"HANG: {h}")
    if report is not None:
        print(f"vadindex check: {'OK' if report.ok else 'DAMAGED'} {list(report.problems)[:3]}")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    summary = {
        "tried": tried,
        "indexed": len(indexed_ids),
        "failed": n_failed,
        "crashes": len(crashes),
        "hangs": len(hangs),
        "tracebacks": tracebacks,
        "mismatches": len(mismatches),
        "index_check_ok": bool(report is None or report.ok),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    print(json.dumps(summary))
    return 0 if not (crashes or hangs or tracebacks) and (report is None or report.ok) else 1


if __name__ == "__main__":
    sys.exit(main())
