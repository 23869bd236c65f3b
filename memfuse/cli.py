"""Settings as plain globals at the top of each stage script, overridable by flags.

A stage script declares ``EPOCHS = 1000`` and a help line in ``HELP``; :func:`configure`
turns every entry of ``HELP`` into a flag (``--epochs``), typed by the global's default,
parses the command line and writes the values back into the script's globals. Edit the
top of a script to change a default; pass a flag to change one run.
"""
from __future__ import annotations

import argparse
import random
import sys
from typing import Any, Callable

import numpy as np
import torch

from .recipes import DEFAULT_RECIPE, dataset_settings, get_recipe, recipe_names

# Settings every stage takes. A stage script imports them (`from memfuse.cli import
# DATASET, ...`) so its readers see where they come from; configure() then overwrites the
# script's copies with the flags' values.
DATASET = "synthetic"
DATA_ROOT = "data"
CHECKPOINT_ROOT = "checkpoints"
DEVICE = "auto"
SEED = 0
RECIPE = DEFAULT_RECIPE
STANDARDISE = False  # per-feature z-scores (fitted on train) of appearance and pose before stages 1-4
COMMON_DEFAULTS: dict[str, Any] = {"DATASET": DATASET, "DATA_ROOT": DATA_ROOT, "CHECKPOINT_ROOT": CHECKPOINT_ROOT, "DEVICE": DEVICE, "SEED": SEED,
                                   "RECIPE": RECIPE, "STANDARDISE": STANDARDISE}
# Settings every stage must share with the stages that made its inputs (memfuse.stages checks).
SHARED_SETTINGS = ("RECIPE", "STANDARDISE")
COMMON_HELP = {
    "RECIPE": f"named settings applied before the flags: {', '.join(recipe_names())} (config/recipes/NAME.toml)",
    "STANDARDISE": "z-score appearance (before the autoencoder) and pose (before its memory) per feature, fitted on train",
    "DATASET": "dataset name: features are read from DATA_ROOT/DATASET/extracted_features",
    "DATA_ROOT": "folder holding DATASET/ (AI-VAD feature format, see README)",
    "CHECKPOINT_ROOT": "stage outputs go to CHECKPOINT_ROOT/DATASET/",
    "DEVICE": "auto (cuda if available), cpu or cuda",
    "SEED": "random seed (torch, numpy, python)",
}


def flag_name(name: str) -> str:
    return "--" + name.lower().replace("_", "-")


def configure(g: dict[str, Any], help_lines: dict[str, str], description: str, argv: list[str] | None = None, *,
              prog: str | None = None, announce: bool = True) -> argparse.Namespace:
    """Add flags for ``COMMON_HELP`` and ``help_lines`` (names of globals in ``g``), apply
    the ``--dataset``'s constants and the ``--recipe``'s settings to ``g`` as defaults,
    parse ``argv`` and store the values in ``g``. Returns the parsed namespace.
    ``prog`` names the script in errors; ``announce`` False keeps quiet about a dataset
    with no config file (run_all.py checks every stage's settings before it runs them)."""
    for name, value in COMMON_DEFAULTS.items():
        g.setdefault(name, value)
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--recipe", default=g["RECIPE"])
    pre.add_argument("--dataset", default=g["DATASET"])
    known, _ = pre.parse_known_args(argv)
    try:
        recipe = get_recipe(known.recipe)
    except ValueError as exc:
        raise SystemExit(f"error: --recipe: {exc}") from None
    try:
        constants = dataset_settings(known.dataset)
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None
    if constants is None and announce:
        print(f"[config] no config/datasets/{known.dataset}.toml: the scripts' defaults apply", file=sys.stderr)
    settings = {**COMMON_HELP, **help_lines}
    # layers, each over the one before: the script's globals, the dataset's constants, the recipe, the flags
    g.update({k: v for k, v in (constants or {}).items() if k in settings})
    g.update({k: v for k, v in recipe.settings.items() if k in settings})
    g["RECIPE"] = recipe.name
    parser = argparse.ArgumentParser(prog=prog, description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    for name, text in settings.items():
        default = g[name]
        if name == "RECIPE":
            parser.add_argument(flag_name(name), dest=name, default=default, choices=recipe_names(), help=text)
        elif isinstance(default, bool):
            parser.add_argument(flag_name(name), dest=name, default=default, action=argparse.BooleanOptionalAction, help=text)
        elif isinstance(default, (int, float, str)):
            parser.add_argument(flag_name(name), dest=name, default=default, type=type(default), help=text)
        else:
            raise TypeError(f"setting {name} has unsupported type {type(default).__name__}")
    args = parser.parse_args(argv)
    try:
        check_dataset_name(args.DATASET)
        check_seed(args.SEED)
    except ValueError as exc:
        parser.error(str(exc))
    g.update(vars(args))
    return args


def check_dataset_name(name: str) -> str:
    """A dataset name is a plain folder name: outputs go to checkpoints/NAME and results/NAME."""
    if not name or name in (".", "..") or any(c in name for c in "/\\") or name.startswith("~"):
        raise ValueError(f"--dataset {name!r}: a dataset is a plain name (no path separators, no '..'); its folder is DATA_ROOT/NAME")
    return name


def check_seed(seed: int) -> int:
    """Seeds are what numpy and torch both take: 0 to 2**32 - 1."""
    if not 0 <= seed < 2**32:
        raise ValueError(f"--seed {seed}: a seed is an integer from 0 to 2**32 - 1")
    return seed


def settings_of(g: dict[str, Any], help_lines: dict[str, str]) -> dict[str, Any]:
    """A stage's settings as recorded in its outputs: the common ones and its own."""
    return {k: g[k] for k in {**COMMON_HELP, **help_lines}}


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda when available else cpu; 'cuda' without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("--device cuda asked for, but torch sees no CUDA device")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def run_stage(main: Callable[[], Any]) -> None:
    """Run a stage's ``main``; print input errors as one line, not a traceback."""
    from .io import InputError

    try:
        main()
    except InputError as exc:
        sys.exit(f"error: {exc}")
