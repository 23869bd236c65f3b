"""Named recipes: each is a set of stage settings applied on top of the stage scripts'
own defaults (the paper's values), before any command-line flag.

- ``memfuse`` (the default): the paper's stages, repaired so that the detector works.
- ``paper``: the method as ``../shared/METHOD.md`` specifies it, the reference scripts'
  bugs fixed.
- ``reference``: the paper with every quirk of the authors' scripts.

A setting's name is the global of the stage script that owns it (``HEAD`` in
attention_fusion.py). A stage applies the recipe's settings it owns and ignores the rest;
``--recipe NAME`` on every stage script and on ``run_all.py`` picks the recipe, and a flag
still overrides one setting of it. Every stage records its recipe in its outputs, and a
stage whose inputs were made under another recipe stops (:mod:`memfuse.stages`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Recipe:
    name: str
    summary: str
    settings: dict[str, Any] = field(default_factory=dict)
    # run_all.py's epoch preset when none is asked for (None: quick on synthetic data, paper on real data)
    preset: str | None = None


RECIPES: dict[str, Recipe] = {
    "memfuse": Recipe(
        "memfuse",
        "the paper's stages, repaired: standardised inputs, pseudo-anomalies outside the normal data, a pooled "
        "classifier head, and the classifier's score summed with the memories' own distances and velocity",
        {
            # Per-feature z-scores (fitted on train) before the autoencoder and the pose memory.
            "STANDARDISE": True,
            # Pseudo-anomaly = q + 1 (q - top-5 mixture): away from the memory, not among its items.
            "EXTRAPOLATE": 1.0,
            # A fifth training pass with velocity x 3 labelled anomalous: the paper never varies velocity.
            "VELOCITY_ANOMALY_SCALE": 3.0,
            # One MLP shared by every object row, max-pooled: no per-slot weights.
            "HEAD": "pool",
            # The shared MLP sees one object row at a time (204-d in): 64 hidden units suffice, and
            # its element-wise work scales with rows x width (a 256-wide pooled head is 2.5x slower).
            "HIDDEN": 64,
            # Frame score = sum of train-standardised terms, one vote per source (memfuse.scoring).
            "SCORE_TERMS": "classifier,app,app_rec,pose,vel",
        },
        preset="quick",  # autoencoder 50, memories 100, fusion 200 epochs: fixed, on every dataset
    ),
    "paper": Recipe("paper", "the method as METHOD.md specifies it, with the reference scripts' bugs fixed"),
    "reference": Recipe(
        "reference",
        "the paper with every quirk of the authors' scripts",
        {"STALE_STEP": True, "MASKING": False, "U2_KEY": "k3", "SMOOTH_PER_VIDEO": False},
    ),
}
DEFAULT_RECIPE = "memfuse"

# Per-dataset constants, only those AI-VAD sets per dataset (velocity bins are read from the
# data). Applied by every stage for --dataset NAME, under the recipe and the flags.
DATASET_SETTINGS: dict[str, dict[str, Any]] = {
    "ped2": {"GMM_COMPONENTS": 2, "SMOOTH_SIGMA": 3.0},
    "avenue": {"GMM_COMPONENTS": 5, "SMOOTH_SIGMA": 3.0},
    "shanghaitech": {"GMM_COMPONENTS": 5, "SMOOTH_SIGMA": 7.0},
}


def get_recipe(name: str) -> Recipe:
    """The recipe called ``name``; a ``ValueError`` listing the known ones otherwise."""
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; known recipes: {', '.join(RECIPES)}")
    return RECIPES[name]
