"""Stage 0 on a local two-node Ray cluster against the local pool with the same two CPUs.

    python bench/ray_extract.py                                # Ped2's test videos, --fast-extract profile
    python bench/ray_extract.py --profile default              # stage 0's defaults (about 5x longer)
    python bench/ray_extract.py --kill 01                      # and SIGKILL the worker on video 01 once

Extracts one split of a dataset twice into ``data/bench_ray/``: with the local process pool
(``workers=2``), then through a Ray cluster started here with ``ray start`` (a head and one
worker node, one CPU each, on 127.0.0.1 only) and joined by its address, as
``extract_features.py --ray 127.0.0.1:PORT`` would. Measures the scheduling overhead per task
(the round trip of an empty one-CPU task, one after another and 50 at once), checks that the
two runs' features are array-equal, prints frames/s of each and their ratio, and writes
``results/ray_extract_<dataset>_<profile>.json``. The cluster is stopped at the end (``ray
stop``), also on an error. Needs Ray (``pip install -r requirements-ray.txt``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

OVERHEAD_TASKS = 50  # empty tasks timed for the per-task overhead
OBJECT_STORE_BYTES = 500_000_000  # per node: the tasks pass settings and summaries, not frames
# `ray start --head` turns token authentication on and writes ~/.ray/auth_token; the worker
# node and this driver find the token there once they are told the mode.
os.environ.setdefault("RAY_AUTH_MODE", "token")


def ray_cli(*args: str) -> None:
    out = subprocess.run(["ray", *args], capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        raise SystemExit(f"ray {' '.join(args)} failed: {out.stderr.strip().splitlines()[-1:]}")


def start_cluster(port: int) -> str:
    common = ["--num-cpus", "1", "--node-ip-address", "127.0.0.1", "--disable-usage-stats"]
    common += ["--object-store-memory", str(OBJECT_STORE_BYTES)]
    ray_cli("start", "--head", "--port", str(port), "--include-dashboard=false", *common)
    ray_cli("start", "--address", f"127.0.0.1:{port}", *common)
    return f"127.0.0.1:{port}"


def overhead_ms(ray) -> dict:
    """Milliseconds per empty one-CPU task: one after another, and many at once."""

    @ray.remote(num_cpus=1)
    def nothing(i: int) -> int:
        return i

    ray.get([nothing.remote(i) for i in range(4)])  # workers started
    t = time.perf_counter()
    for i in range(OVERHEAD_TASKS):
        ray.get(nothing.remote(i))
    serial = (time.perf_counter() - t) / OVERHEAD_TASKS
    t = time.perf_counter()
    ray.get([nothing.remote(i) for i in range(OVERHEAD_TASKS)])
    batch = (time.perf_counter() - t) / OVERHEAD_TASKS
    return {"serial_ms": round(1000 * serial, 2), "concurrent_ms": round(1000 * batch, 2)}


def same_features(a: Path, b: Path) -> list[str]:
    """Names of the .npy files that differ between two extraction folders (empty: all equal)."""
    differ = []
    for x in sorted(a.rglob("*.npy")):
        y = b / x.relative_to(a)
        p, q = np.load(x, allow_pickle=True), np.load(y, allow_pickle=True)
        if p.dtype == object:
            equal = len(p) == len(q) and all(np.array_equal(u, v) for u, v in zip(p, q))
        else:
            equal = np.array_equal(p, q)
        if not equal:
            differ.append(str(x.relative_to(a)))
    return differ


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="ped2")
    p.add_argument("--data-root", default=str(ROOT.parent / "shared" / "data"))
    p.add_argument("--split", default="test", choices=("train", "test"))
    p.add_argument("--profile", default="fast", choices=("fast", "default"))
    p.add_argument("--port", type=int, default=6390)
    p.add_argument("--kill", default="", help="SIGKILL the worker extracting this video once (the fault test)")
    args = p.parse_args()

    from memfuse import distributed
    from memfuse.extract.pipeline import ExtractSettings, extract_dataset

    ray = distributed.import_ray()
    settings = ExtractSettings(workers=2)
    settings = settings.fast() if args.profile == "fast" else settings
    work = ROOT / "data" / "bench_ray"
    shutil.rmtree(work, ignore_errors=True)
    runs = {}
    t = time.perf_counter()
    extract_dataset(args.dataset, args.data_root, work / "local", settings, splits=(args.split,))
    runs["local_pool"] = time.perf_counter() - t
    try:
        address = start_cluster(args.port)
        distributed.connect(address)
        overhead = overhead_ms(ray)
        if args.kill:
            os.environ[distributed.FAULT_ENV] = args.kill
        t = time.perf_counter()
        far = ExtractSettings(**{**settings.__dict__, "ray": address})
        extract_dataset(args.dataset, args.data_root, work / "ray", far, splits=(args.split,))
        runs["ray_two_nodes"] = time.perf_counter() - t
    finally:
        ray.shutdown()
        ray_cli("stop", "--force")
    folder = Path(args.dataset) / "extracted_features" / args.split
    vel = np.load(work / "local" / folder / "velocity.npy", allow_pickle=True)
    frames = len(vel)
    differ = same_features(work / "local" / args.dataset, work / "ray" / args.dataset)
    fps = {k: round(frames / v, 2) for k, v in runs.items()}
    report = {
        "dataset": args.dataset,
        "split": args.split,
        "profile": args.profile,
        "frames": frames,
        "seconds": {k: round(v, 1) for k, v in runs.items()},
        "frames_per_s": fps,
        "ray_over_pool": round(fps["ray_two_nodes"] / fps["local_pool"], 3),
        "task_overhead": overhead,
        "killed_video": args.kill or None,
        "array_equal": not differ,
        "differ": differ,
        "cpus": os.cpu_count(),
    }
    out = ROOT / "results" / f"ray_extract_{args.dataset}_{args.profile}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))
    print(f"-> {out}")
    if differ:
        raise SystemExit(f"features differ between the local pool and Ray: {', '.join(differ)}")


if __name__ == "__main__":
    main()
