"""What every stage does before and after its own work, written once.

:func:`begin` is a stage's preamble: configure its settings (:mod:`memfuse.config`), make
the embedded synthetic data when it is asked for and missing, seed, pick the device, open
the recipe's checkpoint folder and check that the stages it reads from ran under the same
recipe (provenance). :meth:`StageRun.finish` records that the stage's outputs are complete.
"""

from __future__ import annotations

import json
import random
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from . import config, registry
from .io import InputError, checkpoint_dir, save_json

PROVENANCE = ".provenance"  # CKPT/.provenance/<script>.json: the settings of the last complete run
SYNTHETIC = "synthetic"


@dataclass
class StageRun:
    """A stage being run: its script, settings as they run, device and checkpoint folder."""

    script: str
    settings: dict[str, Any]
    device: Any
    ckpt: Path | None

    def __getitem__(self, name: str) -> Any:
        return self.settings[name]

    @property
    def dataset(self) -> str:
        return self.settings["DATASET"]

    @property
    def data_root(self) -> Path:
        return Path(self.settings["DATA_ROOT"])

    @property
    def recipe(self) -> str:
        return self.settings["RECIPE"]

    @property
    def seed(self) -> int:
        return self.settings["SEED"]

    def finish(self) -> None:
        """Record that the stage finished writing its outputs, with its settings."""
        if self.ckpt is not None:
            save_json(provenance_path(self.ckpt, self.script), self.settings)


def begin(g: dict[str, Any], script: str, argv: list[str] | None = None) -> StageRun:
    """The preamble of ``script`` run with the globals ``g`` of its settings' script (a
    twin passes its own name): configure ``g``, make the synthetic data when it is the
    dataset and missing, seed, device, and for a checkpoint stage its folder and the
    provenance check of its inputs (:func:`check_inputs`)."""
    description = (g.get("__doc__") or "").strip().split("\n")[0]
    settings = config.configure(g, script, argv, description=description)
    if script != registry.EXTRACT.script:  # stage 0 makes features from raw video; the synthetic data come as features
        ensure_synthetic(Path(g["DATA_ROOT"]), g["DATASET"], g["SEED"])
    seed_everything(g["SEED"])
    device = resolve_device(g["DEVICE"])
    ckpt = None
    if registry.stage(script) in registry.STAGES:
        ckpt = checkpoint_dir(g["DATASET"], g["CHECKPOINT_ROOT"], g["RECIPE"])
        check_inputs(ckpt, script, settings)
    return StageRun(script, settings, device, ckpt)


def run(main: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    """Run a script's ``main``; print an input error as one line, not a traceback."""
    try:
        main(*args, **kwargs)
    except InputError as exc:
        sys.exit(f"error: {exc}")


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(name: str):
    """'auto' -> cuda when available else cpu; 'cuda' without a GPU is an error."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InputError("--device cuda asked for, but torch sees no CUDA device")
    return torch.device(name)


def ensure_synthetic(data_root: Path, dataset: str, seed: int) -> bool:
    """Make the embedded synthetic dataset in ``data_root`` when it is asked for and
    missing; returns whether it was made."""
    from . import data as D

    if dataset != SYNTHETIC or D.feature_path(data_root, SYNTHETIC, "train", "vel").exists():
        return False
    from .synthetic import SyntheticSpec, make_dataset

    make_dataset(data_root, SYNTHETIC, SyntheticSpec(seed=seed))
    print(f"made the synthetic dataset in {data_root / SYNTHETIC} (seed {seed})", file=sys.stderr)
    return True


def provenance_path(ckpt: Path, script: str) -> Path:
    return Path(ckpt) / PROVENANCE / f"{script}.json"


def check_inputs(ckpt: Path, script: str, settings: dict[str, Any]) -> None:
    """Check that the stages ``script`` reads from ran with the same recipe (and the other
    :data:`memfuse.config.PROVENANCE_CHECKED` settings both take), then drop ``script``'s own
    record: its outputs are incomplete until :meth:`StageRun.finish`. Raises
    :class:`InputError` naming both sides."""
    for source in registry.stage(script).inputs:
        record_path = provenance_path(ckpt, source)
        if not record_path.exists():
            made = [o for o in registry.stage(source).outputs if (Path(ckpt) / o).exists()]
            if made:
                raise InputError(
                    f"{Path(ckpt) / made[0]} has no record of the settings it was made with "
                    f"(its stage did not finish, or an older version made it): "
                    f"rerun python {source} --recipe {settings['RECIPE']}"
                )
            continue  # nothing made yet: loading the input will name the stage to run
        theirs = json.loads(record_path.read_text())
        checked = [k for k in config.PROVENANCE_CHECKED if k in settings and k in theirs]
        differ = {k: (theirs[k], settings[k]) for k in checked if theirs[k] != settings[k]}
        if differ:
            said = ", ".join(f"{k}={a!r}" for k, (a, _) in differ.items())
            mine = ", ".join(f"{k}={b!r}" for k, (_, b) in differ.items())
            raise InputError(
                f"{script}: its inputs from {source} in {ckpt} were made with {said}, this run has {mine}; "
                f"rerun python {source} with the same settings (or run {script} with theirs)"
            )
    record_path = provenance_path(ckpt, script)
    if record_path.exists():
        record_path.unlink()


def upstream_settings(ckpt: Path, script: str) -> dict[str, dict[str, Any]]:
    """The recorded settings of every stage whose outputs ``script`` depends on: {script: settings}."""
    return {
        s: json.loads(provenance_path(ckpt, s).read_text())
        for s in registry.upstream(script)
        if provenance_path(ckpt, s).exists()
    }


def data_files(data_root: Path, dataset: str, script: str) -> list[Path]:
    """The dataset files ``script`` reads (those that exist)."""
    from . import data as D

    root = D.resolve_data_root(dataset, data_root)
    out = []
    for split, what in registry.stage(script).data:
        if what == "clip_lengths":
            out.append(root / dataset / f"{split}_clip_lengths.npy")
        elif what == "labels":
            out += [p for p in D.label_candidates(root, dataset) if p.exists()][:1]
        else:
            out.append(D.feature_path(root, dataset, split, what))
    return [p for p in out if p.exists()]


def file_identity(paths: list[Path]) -> dict[str, list[int]]:
    """{path: [size, mtime in ns]}: changes when a file is rewritten, replaced or touched."""
    return {str(p): [p.stat().st_size, p.stat().st_mtime_ns] for p in paths}
