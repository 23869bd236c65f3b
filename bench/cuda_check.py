"""One prepared GPU check: paper-preset timings at Avenue scale, and CPU == GPU agreement.

    python bench/cuda_check.py                 # on a machine with CUDA (~2-4 min)
    python bench/cuda_check.py --allow-cpu     # dry run of the code path on CPU, tiny scale

1. Timings: bench/run.py's stages at ``--scale`` (default avenue) on the GPU, a few epochs
   each, extrapolated to the paper's epochs (autoencoder 1000, memories 5000 each, fusion
   2000; K-Means and pseudo generation run once). scikit-learn's KMeans is not run here
   (CPU only; bench/run.py times it).
2. Agreement, from the same inputs and the same weights on both devices:
   - pseudo features (memfuse.pseudo.generate): normal / anomaly max |cpu - gpu| and the
     fraction of queries whose 10 ranked memory indices agree (near-ties may swap);
   - fusion scores (memfuse.fusion.score) of one AttentionFusion state dict loaded on both;
   - memory losses (Memory.losses) for fixed items and queries;
   - K-Means assignment (memfuse.kmeans.assign) and the baseline's 1-NN distance.
   Each check has a tolerance; the script exits 1 if one fails.

Without CUDA it prints a clear message and exits 0. Writes ``results/cuda_check.json``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench import run as B  # noqa: E402
from memfuse.baseline import knn_distance  # noqa: E402
from memfuse.fusion import PaddedSplit, score  # noqa: E402
from memfuse.io import RESULTS_ROOT, save_json  # noqa: E402
from memfuse.kmeans import assign  # noqa: E402
from memfuse.models import AttentionFusion, Memory  # noqa: E402
from memfuse.pseudo import generate  # noqa: E402

TOL = {
    "pseudo": 1e-4,
    "fusion": 1e-4,
    "memory_loss": 1e-4,
    "index_agreement": 0.999,
    "assign_agreement": 0.999,
    "knn": 1e-3,
}
AGREE_ROWS = 50_000  # queries / objects compared
AGREE_FRAMES = 4096  # fusion frames compared


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--scale", default=None, help="bench scale (default avenue; tiny with --allow-cpu)")
    p.add_argument("--epochs", type=int, default=3, help="epochs timed per training stage")
    p.add_argument(
        "--allow-cpu", action="store_true", help="no CUDA: run everything on CPU as a dry run of this script"
    )
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    p.add_argument("--out", default=str(RESULTS_ROOT / "cuda_check.json"))
    return p.parse_args(argv)


def max_abs(a, b) -> float:
    return (
        float(np.max(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)))) if np.size(a) else 0.0
    )


def agreement(ctx: dict, gpu: torch.device, seed: int = 0) -> dict:
    """CPU vs ``gpu`` on the same inputs and weights; each entry has value, tol, ok."""
    cpu = torch.device("cpu")
    out = {}

    def check(name, value, tol, higher_is_better=False):
        ok = value >= tol if higher_is_better else value <= tol
        out[name] = {"value": value, "tol": tol, "ok": bool(ok)}

    q = B.queries(ctx, "app")[:AGREE_ROWS]
    items = B.memory_items(ctx, "app", argparse.Namespace(seed=seed, memory_size=500), trained=True)
    a, b = generate(q, items, device=cpu), generate(q, items, device=gpu)
    check("pseudo_normal_max_abs", max_abs(a.normal, b.normal), TOL["pseudo"])
    check("pseudo_anomaly_max_abs", max_abs(a.anomaly, b.anomaly), TOL["pseudo"])
    check(
        "pseudo_index_agreement", float(np.mean(np.all(a.indices == b.indices, axis=1))), TOL["index_agreement"], True
    )

    mem_c = Memory(torch.from_numpy(items))
    mem_g = Memory(torch.from_numpy(items)).to(gpu)
    qt = torch.from_numpy(np.ascontiguousarray(q[:4096]))
    with torch.no_grad():
        lc, lg = mem_c.losses(qt), mem_g.losses(qt.to(gpu))
    check(
        "memory_losses_max_rel",
        max(abs(float(lc[k]) - float(lg[k])) / max(abs(float(lc[k])), 1e-12) for k in lc),
        TOL["memory_loss"],
    )

    lab_c, _ = assign(torch.from_numpy(q), torch.from_numpy(items))
    lab_g, _ = assign(torch.from_numpy(q).to(gpu), torch.from_numpy(items).to(gpu))
    check("kmeans_assign_agreement", float((lab_c == lab_g.cpu()).float().mean()), TOL["assign_agreement"], True)

    ref, qq = q[:20_000], q[20_000:25_000]
    check(
        "knn_distance_max_abs",
        max_abs(knn_distance(qq, ref, device=cpu), knn_distance(qq, ref, device=gpu)),
        TOL["knn"],
    )

    test = B.padded(ctx, argparse.Namespace(seed=seed), "test")
    n = min(AGREE_FRAMES, test.n_frames)
    sub = PaddedSplit(
        app=test.app[:n], pose=test.pose[:n], vel=test.vel[:n], app_mask=test.app_mask[:n], pose_mask=test.pose_mask[:n]
    )
    torch.manual_seed(seed)
    model = AttentionFusion(ctx["n_max"])
    with torch.no_grad():  # larger weights than at init, so scores spread over (0, 1)
        model.classifier[3].weight.mul_(5.0)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    m_c, m_g = AttentionFusion(ctx["n_max"]), AttentionFusion(ctx["n_max"]).to(gpu)
    m_c.load_state_dict(state)
    m_g.load_state_dict(state)
    s_c, s_g = score(m_c, sub, cpu), score(m_g, sub, gpu)
    check("fusion_score_max_abs", max_abs(s_c, s_g), TOL["fusion"])
    out["fusion_score_spread"] = {"min": float(s_c.min()), "max": float(s_c.max())}
    out["tf32_matmul"] = bool(torch.backends.cuda.matmul.allow_tf32)
    return out


def main(argv=None) -> int:
    a = parse_args(argv)
    if not torch.cuda.is_available() and not a.allow_cpu:
        print(
            "cuda_check: torch sees no CUDA device on this machine; nothing to check (run it on a GPU machine, "
            "or pass --allow-cpu for a CPU dry run of the script). Exiting 0."
        )
        return 0
    device = "cuda" if torch.cuda.is_available() else "cpu"
    scale = a.scale or ("avenue" if device == "cuda" else "tiny")
    bench_args = [
        "--scale",
        scale,
        "--device",
        device,
        "--ae-epochs",
        str(a.epochs),
        "--memory-epochs",
        str(a.epochs),
        "--fusion-epochs",
        str(a.epochs),
        "--sklearn-max-n",
        "0",
        "--loop-sample",
        "500",
        "--threads",
        str(a.threads),
    ]
    t0 = time.perf_counter()
    print(f"[cuda_check] timings: bench/run.py {' '.join(bench_args)}", flush=True)
    ctx: dict = {}  # the run's data, memories and padded splits, reused by the agreement checks
    results = B.run(B.parse_args(bench_args), keep=ctx)
    B.print_table(results)
    print("[cuda_check] agreement CPU vs " + device, flush=True)
    agree = agreement(ctx, torch.device(device))
    failed = [k for k, v in agree.items() if isinstance(v, dict) and "ok" in v and not v["ok"]]
    for k, v in agree.items():
        if isinstance(v, dict) and "ok" in v:
            print(f"  {k:<28} {v['value']:.3g}  (tol {v['tol']:g})  {'ok' if v['ok'] else 'FAIL'}")
    report = {
        "device": device,
        "device_name": results["device_name"],
        "scale": scale,
        "timings": results,
        "agreement": agree,
        "failed": failed,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    save_json(a.out, report)
    print(
        f"[cuda_check] {'all agreement checks passed' if not failed else 'FAILED: ' + ', '.join(failed)}; wrote {a.out}"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
