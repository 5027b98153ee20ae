"""Fuzz ingestion: damage real clips in many ways, build an index over them, and check that the
build never crashes or hangs and that the index holds exactly the videos that can be read.

The real clips are first copied into each container (``--containers``, default MP4, AVI and MKV:
the streams are remuxed, not re-encoded, H.264 going into AVI as Annex B). Each variant is a copy
of one of these with one mutation: truncation, random byte flips, a burst of random bytes, zeroed
or shuffled header bytes, damaged container atoms/chunks/elements, a cut-out or duplicated block,
and damage in the middle of the video stream found from its packets' file positions (garbled,
zeroed, removed or repeated packets, bit flips spread over them). The build runs as
``vadindex build`` in a subprocess (the real CLI, with a wall clock limit), so a crash or a hang is
seen as such; after one, the file in flight is set aside and the build is resumed. Independently,
OpenCV (its own FFmpeg build) decodes every variant, reading past frames that fail as vadindex
does; a video "can be read" when OpenCV reads at least one segment's worth of it. Videos with the
same fingerprint (a byte flip in the middle of a large file leaves it unchanged) are compared as one.

    python scripts/fuzz_ingest.py --count 1000 --seed 17
    python scripts/fuzz_ingest.py --count 40 --max-mb 0.3 --keep /tmp/fuzz

Prints figures per mutation and per container; the last line is one JSON object (tried, indexed,
failed, crashes, hangs, tracebacks, mismatches, seconds). ``tests/test_fuzz.py`` runs a few dozen
variants of the same mutations with a fixed seed in the test suite.
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
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_VIDEOS = ROOT.parent / "shared" / "data" / "videos"
SEGMENT_SECONDS = 1.0
CONTAINERS = (".mp4", ".avi", ".mkv")

# --------------------------------------------------------------------------------------------------
# Base clips: every real clip in every container
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Base:
    """A clip to mutate, with the file positions of its video packets (``(offset, size)``)."""

    path: Path
    packets: tuple[tuple[int, int], ...]

    @property
    def container(self) -> str:
        return self.path.suffix.lower()


def remux(src: Path, dst: Path) -> None:
    """Copy the video stream of ``src`` into the container that ``dst``'s suffix names.

    H.264 from MP4 carries length-prefixed NAL units; AVI needs Annex B start codes, so it goes
    through FFmpeg's ``h264_mp4toannexb`` filter (or, with a PyAV too old to have bitstream
    filters, is re-encoded as MPEG-4 Part 2, what AVI files usually hold).
    """
    import av

    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        vin = inp.streams.video[0]
        vout = out.add_stream_from_template(vin)
        bsf = None
        if dst.suffix.lower() == ".avi":
            # AVI counts frames: one tick per frame (a variable frame rate does not fit and is refused).
            vout.time_base = 1 / Fraction(vin.average_rate or 25).limit_denominator(1001)
            if vin.codec_context.name == "h264":
                try:
                    from av.bitstream import BitStreamFilterContext
                except ImportError:
                    out.close()
                    _reencode(src, dst)
                    return
                bsf = BitStreamFilterContext("h264_mp4toannexb", vin, vout)  # also rewrites the extradata
        for packet in inp.demux(vin):
            if packet.dts is None:  # the flush packet
                continue
            for p in bsf.filter(packet) if bsf is not None else (packet,):
                p.stream = vout
                out.mux(p)


def _reencode(src: Path, dst: Path) -> None:
    import av

    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        vin = inp.streams.video[0]
        rate = vin.average_rate or 25
        vout = out.add_stream("mpeg4", rate=rate)
        vout.width, vout.height, vout.pix_fmt = vin.width, vin.height, "yuv420p"
        for i, frame in enumerate(inp.decode(vin)):
            frame = frame.reformat(format="yuv420p")
            frame.pts = i
            for packet in vout.encode(frame):
                out.mux(packet)
        for packet in vout.encode():
            out.mux(packet)


def video_packets(path: Path) -> tuple[tuple[int, int], ...]:
    """``(offset, size)`` of every video packet whose file position the demuxer reports."""
    import av

    with av.open(str(path)) as c:
        return tuple((p.pos, p.size) for p in c.demux(video=0) if p.size and p.pos is not None and p.pos >= 0)


def make_bases(clips: list[Path], folder: Path, containers: tuple[str, ...] = CONTAINERS) -> list[Base]:
    """Each clip in each container (the clip itself where it already is in one), under ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    bases = []
    for clip in clips:
        for ext in containers:
            stem = f"{clip.stem}-{clip.suffix.lower()[1:]}"
            target = folder / f"{stem}{ext}"
            if clip.suffix.lower() == ext:
                shutil.copy(clip, target)
            else:
                try:
                    remux(clip, target)
                except Exception as exc:  # noqa: BLE001 - a clip a container cannot hold is left out
                    print(f"cannot put {clip.name} into {ext}: {exc}", file=sys.stderr)
                    target.unlink(missing_ok=True)
                    continue
            bases.append(Base(target, video_packets(target)))
    return bases


# --------------------------------------------------------------------------------------------------
# Mutations: (name, function(bytes, base, rng) -> bytes)
# --------------------------------------------------------------------------------------------------

#: Container structures worth hitting: MP4 atoms, AVI chunks, Matroska element ids.
MARKERS = (b"moov", b"mdat", b"trak", b"stsz", b"stco", b"stts", b"stss", b"avcC", b"hdlr", b"mvhd",
           b"tkhd", b"RIFF", b"LIST", b"hdrl", b"strh", b"strf", b"movi", b"idx1", b"00dc",
           b"\x1a\x45\xdf\xa3", b"\x18\x53\x80\x67", b"\x16\x54\xae\x6b", b"\x1f\x43\xb6\x75",
           b"\x1c\x53\xbb\x6b", b"\x11\x4d\x9b\x74")  # fmt: skip


def truncate(data: bytes, base: Base, rng: random.Random) -> bytes:
    return data[: int(len(data) * rng.uniform(0.02, 0.98))]


def truncate_tail(data: bytes, base: Base, rng: random.Random) -> bytes:
    return data[: len(data) - rng.randint(1, 4096)]


def flip_bytes(data: bytes, base: Base, rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rng.choice((1, 3, 10, 50, 200))):
        out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
    return bytes(out)


def random_burst(data: bytes, base: Base, rng: random.Random) -> bytes:
    out = bytearray(data)
    n = rng.choice((16, 256, 4096, 65536))
    at = rng.randrange(max(len(out) - n, 1))
    out[at : at + n] = rng.randbytes(min(n, len(out) - at))
    return bytes(out)


def header_damage(data: bytes, base: Base, rng: random.Random) -> bytes:
    out = bytearray(data)
    span = min(len(out), rng.choice((16, 64, 512, 4096)))
    if rng.random() < 0.5:
        out[:span] = bytes(span)
    else:
        for _ in range(rng.randint(1, 20)):
            out[rng.randrange(span)] = rng.randrange(256)
    return bytes(out)


def atom_damage(data: bytes, base: Base, rng: random.Random) -> bytes:
    """Damage a box/chunk/element header: its size field or its name."""
    out = bytearray(data)
    hits = [i for m in MARKERS for i in _find_all(data, m)]
    if not hits:
        return flip_bytes(data, base, rng)
    at = rng.choice(hits)
    if rng.random() < 0.5 and at >= 4:
        out[at - 4 : at] = rng.randbytes(4)  # MP4 size field / AVI fourcc before the size
    else:
        out[at : at + 4] = rng.randbytes(4)
    return bytes(out)


def cut_block(data: bytes, base: Base, rng: random.Random) -> bytes:
    n = rng.choice((100, 4096, 65536))
    at = rng.randrange(max(len(data) - n, 1))
    return data[:at] + data[at + n :]


def duplicate_block(data: bytes, base: Base, rng: random.Random) -> bytes:
    n = rng.choice((100, 4096, 65536))
    at = rng.randrange(max(len(data) - n, 1))
    return data[: at + n] + data[at : at + n] + data[at + n :]


def _middle_run(base: Base, rng: random.Random, most: int) -> list[tuple[int, int]]:
    """A run of 1..``most`` consecutive video packets starting in the middle 20-80 % of the stream."""
    packets = base.packets
    if not packets:
        return []
    lo, hi = int(len(packets) * 0.2), max(int(len(packets) * 0.8), int(len(packets) * 0.2) + 1)
    first = rng.randrange(lo, min(hi, len(packets)))
    return list(packets[first : first + rng.randint(1, most)])


def mid_garble(data: bytes, base: Base, rng: random.Random) -> bytes:
    """Random bytes in place of 1-5 packets in the middle of the stream (headers untouched)."""
    run = _middle_run(base, rng, 5)
    if not run:
        return random_burst(data, base, rng)
    out = bytearray(data)
    for pos, size in run:
        out[pos : pos + size] = rng.randbytes(len(out[pos : pos + size]))
    return bytes(out)


def mid_zero(data: bytes, base: Base, rng: random.Random) -> bytes:
    """Zeros in place of 1-20 packets (a dropout on the storage)."""
    run = _middle_run(base, rng, 20)
    if not run:
        return random_burst(data, base, rng)
    out = bytearray(data)
    for pos, size in run:
        out[pos : pos + size] = bytes(len(out[pos : pos + size]))
    return bytes(out)


def mid_cut(data: bytes, base: Base, rng: random.Random) -> bytes:
    """The bytes of 1-5 packets removed: everything after them shifts, the container's index lies."""
    run = _middle_run(base, rng, 5)
    if not run:
        return cut_block(data, base, rng)
    start, end = run[0][0], run[-1][0] + run[-1][1]
    return data[:start] + data[end:]


def mid_repeat(data: bytes, base: Base, rng: random.Random) -> bytes:
    """The bytes of 1-5 packets written twice."""
    run = _middle_run(base, rng, 5)
    if not run:
        return duplicate_block(data, base, rng)
    start, end = run[0][0], run[-1][0] + run[-1][1]
    return data[:end] + data[start:end] + data[end:]


def mid_flips(data: bytes, base: Base, rng: random.Random) -> bytes:
    """Bit flips spread over the packets of the middle of the stream (a noisy transmission)."""
    packets = base.packets[len(base.packets) // 5 : max(len(base.packets) * 4 // 5, 1)]
    if not packets:
        return flip_bytes(data, base, rng)
    out = bytearray(data)
    for _ in range(rng.choice((5, 20, 100))):
        pos, size = rng.choice(packets)
        at = pos + rng.randrange(size)
        if at < len(out):
            out[at] ^= 1 << rng.randrange(8)
    return bytes(out)


def _find_all(data: bytes, needle: bytes, limit: int = 64) -> list[int]:
    found, i = [], data.find(needle)
    while i >= 0 and len(found) < limit:
        found.append(i)
        i = data.find(needle, i + 1)
    return found


MUTATIONS: dict[str, Callable[[bytes, Base, random.Random], bytes]] = {
    "truncate": truncate,
    "truncate-tail": truncate_tail,
    "flip-bytes": flip_bytes,
    "random-burst": random_burst,
    "header": header_damage,
    "atom": atom_damage,
    "cut-block": cut_block,
    "duplicate-block": duplicate_block,
    "mid-garble": mid_garble,
    "mid-zero": mid_zero,
    "mid-cut": mid_cut,
    "mid-repeat": mid_repeat,
    "mid-flips": mid_flips,
}


def make_variants(bases: list[Base], count: int, seed: int, folder: Path) -> dict[str, tuple[str, str]]:
    """Write ``count`` mutated variants into ``folder``; returns ``{file name: (mutation, container)}``.

    Mutations take turns; the base clip of each is drawn at random (seeded).
    """
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    names = list(MUTATIONS)
    kinds: dict[str, tuple[str, str]] = {}
    for i in range(count):
        base, kind = rng.choice(bases), names[i % len(names)]
        data = MUTATIONS[kind](base.path.read_bytes(), base, rng)
        target = folder / f"{i:04d}-{kind}-{base.path.name}"
        target.write_bytes(data)
        kinds[target.name] = (kind, base.container)
    return kinds


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
    ap.add_argument("--containers", default="mp4,avi,mkv", help="Containers to put the clips in.")
    ap.add_argument("--model", default="vadindex-test")
    ap.add_argument("--pretrained", default="random")
    ap.add_argument("--video-timeout", type=float, default=60.0, help="--video-timeout of the build.")
    ap.add_argument("--build-timeout", type=float, default=None,
                    help="Wall-clock limit of one build run (default 600 s + 5 s per variant).")  # fmt: skip
    ap.add_argument("--keep", type=Path, default=None, help="Work here and keep the variants and the index.")
    args = ap.parse_args()
    if args.build_timeout is None:
        args.build_timeout = 600.0 + 5.0 * args.count

    t0 = time.perf_counter()
    containers = tuple(f".{c.strip().lower().lstrip('.')}" for c in args.containers.split(",") if c.strip())
    clips = sorted(p for p in args.videos.rglob("*") if p.suffix.lower() in CONTAINERS
                   and p.stat().st_size <= args.max_mb * 1e6)  # fmt: skip
    if not clips:
        print(f"no clips under {args.videos}", file=sys.stderr)
        return 2
    work = args.keep or Path(tempfile.mkdtemp(prefix="vadindex-fuzz-"))
    bases_dir, variants, quarantine, index = (
        work / "bases",
        work / "variants",
        work / "quarantine",
        work / "index",
    )
    for d in (bases_dir, variants, quarantine, index):
        shutil.rmtree(d, ignore_errors=True)
    quarantine.mkdir(parents=True)
    bases = make_bases(clips, bases_dir, containers)
    kinds = make_variants(bases, args.count, args.seed, variants)
    names = list(MUTATIONS)
    print(f"{args.count} variants (seed {args.seed}) of {len(clips)} clips (<= {args.max_mb:g} MB) in "
          f"{len(containers)} containers ({', '.join(containers)}) in {variants}")  # fmt: skip

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
        kind, container = kinds[files[0]]
        for key in (kind, container):
            per_kind[(key, "tried")] += len(files)
            per_kind[(key, "indexed")] += int(got)
        if got != want:
            rows = [readable.get(str(variants / f), {}) for f in files]
            mismatches.append(
                {"files": files, "indexed": got, "opencv_seconds": [r.get("seconds") for r in rows]}
            )
            per_kind[(kind, "mismatch")] += 1
            per_kind[(container, "mismatch")] += 1
    tried = args.count
    n_failed = len(failures)
    abandoned = 0
    if not failures.empty:
        abandoned = int(failures["reason"].astype(str).str.contains("stalled|--video-timeout").sum())
    print(f"probe (OpenCV) {t_probe:.1f} s; build {t_build:.1f} s in {runs} run(s)")
    print(f"{'mutation':16s} {'tried':>6s} {'indexed':>8s} {'mismatch':>9s}")
    for kind in (*names, *containers):
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
        "seed": args.seed,
        "containers": [c[1:] for c in containers],
        "distinct": len(by_id),
        "indexed": len(indexed_ids),
        "failed": n_failed,
        "abandoned": abandoned,
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
