"""What a user waits when pretrained weights are neither cached nor reachable.

``vadindex build`` with ``--model ViT-B-32 --pretrained laion2b_s34b_b79k`` and an empty cache, run
as a user runs it (a fresh process, from start to exit), in two situations:

- ``offline``: ``HF_HUB_OFFLINE=1`` (no connection is tried);
- ``unreachable``: no offline flag, the hub at an address that does not resolve
  (``HF_ENDPOINT=https://unreachable.invalid``): one connection attempt, limited to 3 s.

For each: the wall time of the whole command (``cli_s``: ``python -m vadindex._cli.main build ...``,
process start to exit, imports included) and, in a second, instrumented run of the same entry
point, the imports of torch and open_clip (``imports_s``), everything after them to the exit
(``after_imports_s``: planning the build, the lock, the refusal, the message) and the
``load_encoder`` call alone (``load_encoder_s``). Each is the median of ``--repeat`` runs. The exit status must be 1 and stderr one ``Error:`` line naming the model, the
tag and ``--pretrained``.

    python scripts/bench_offline_failure.py
    python scripts/bench_offline_failure.py --repeat 5

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: The CLI's own entry point, with the part after the imports timed (printed from an exit handler:
#: ``main`` ends the process with ``os._exit`` once those have run).
CHILD = r"""
import atexit, sys, time
t0 = time.perf_counter()
import vadindex.models.openclip as oc  # torch, open_clip: what every encoding command imports
from vadindex._cli.main import main
real, spent = oc.load_encoder, {}
def timed(*a, **k):
    t = time.perf_counter()
    try:
        return real(*a, **k)
    finally:
        spent["load_encoder"] = time.perf_counter() - t
oc.load_encoder = timed
t1 = time.perf_counter()
atexit.register(lambda: print(f"TIMES imports={t1 - t0:.4f} after_imports={time.perf_counter() - t1:.4f} "
                              f"load_encoder={spent.get('load_encoder', -1):.4f}", file=sys.stderr))
sys.argv[0] = "vadindex"
main()
"""


def run(env_extra: dict[str, str], work: Path) -> dict[str, float]:
    """The command as a user runs it (``cli_s``), then instrumented (the inner times)."""
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_ENDPOINT")}
    env.update(env_extra)
    env["HF_HOME"] = str(work / "hf")  # an empty cache
    env["XDG_CACHE_HOME"] = str(work / "cache")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    out: dict[str, float] = {}
    for argv0 in (["-m", "vadindex._cli.main"], ["-c", CHILD]):
        index = work / f"ix-{time.perf_counter_ns()}"
        cmd = [sys.executable, *argv0, "build", str(work / "clip.mp4"), "--index", str(index), "--model",
               "ViT-B-32", "--pretrained", "laion2b_s34b_b79k", "--device", "cpu", "--no-progress"]  # fmt: skip
        t = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
        wall = time.perf_counter() - t
        errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("Error:")]
        ok = (
            proc.returncode == 1
            and len(errors) == 1
            and all(w in errors[0] for w in ("ViT-B-32", "laion2b_s34b_b79k", "--pretrained"))
            and not index.exists()
        )
        if not ok:
            raise SystemExit(f"unexpected result (exit {proc.returncode}):\n{proc.stderr}")
        if argv0[0] == "-m":
            out["cli_s"] = wall
        else:
            times = dict(kv.split("=") for kv in proc.stderr.split("TIMES ")[1].split())
            out.update({f"{k}_s": float(v) for k, v in times.items()})
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import write_video

    out: dict[str, object] = {"repeat": args.repeat, "load_avg_1min": round(os.getloadavg()[0], 2)}
    with tempfile.TemporaryDirectory(prefix="vadindex-offline-") as tmp:
        work = Path(tmp)
        write_video(work / "clip.mp4", seconds=2)
        cases = {
            "offline": {"HF_HUB_OFFLINE": "1"},
            "unreachable": {"HF_ENDPOINT": "https://unreachable.invalid"},
        }
        for name, env in cases.items():
            runs = [run(env, work) for _ in range(args.repeat)]
            med = {k: round(statistics.median(r[k] for r in runs), 3) for k in runs[0]}
            print(f"{name:12s} whole command {med['cli_s']:.2f} s (imports {med['imports_s']:.2f} s, "
                  f"after the imports {med['after_imports_s']:.3f} s, load_encoder {med['load_encoder_s']:.3f} s)")  # fmt: skip
            out[name] = med
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
