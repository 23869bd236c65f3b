"""Named recipes and per-dataset constants, read from ``config/``.

- ``config/recipes/NAME.toml``: a recipe, i.e. stage settings applied on top of the stage
  scripts' own defaults (the paper's values), before any flag. ``memfuse`` (the default)
  is the paper's stages repaired so that the detector works; ``paper`` is the method as
  ``../shared/METHOD.md`` specifies it, the reference scripts' bugs fixed; ``reference`` is
  the paper with every quirk of the authors' scripts.
- ``config/datasets/NAME.toml``: the constants AI-VAD sets per dataset (velocity bins, the
  baseline's GMM components, the smoothing sigma), applied under the recipe. A dataset
  with no file runs on the scripts' defaults.

A setting's name is the global of the stage script that owns it (``HEAD`` in
attention_fusion.py). A stage applies the settings it owns and ignores the rest;
``--recipe NAME`` on every stage script and on ``run_all.py`` picks the recipe, and a flag
still overrides one setting of it. A file naming a setting that no stage has is an error
that names the nearest known one. Every stage records its recipe in its outputs, and a
stage whose inputs were made under another recipe stops (:mod:`memfuse.stages`).
"""
from __future__ import annotations

import ast
import difflib
import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from .io import PROJECT_ROOT

CONFIG_DIR = PROJECT_ROOT / "config"
DEFAULT_RECIPE = "memfuse"
# Settings read outside the stage scripts' HELP tables: stage 0's velocity bins.
OTHER_SETTINGS = {"VELOCITY_BINS": "extract_features.py"}


@dataclass(frozen=True)
class Recipe:
    name: str
    summary: str
    settings: dict[str, Any] = field(default_factory=dict)
    # run_all.py's epoch preset when none is asked for (None: quick on synthetic data, paper on real data)
    preset: str | None = None


@lru_cache(maxsize=None)
def known_settings(root: Path = PROJECT_ROOT) -> dict[str, tuple[str, ...]]:
    """setting name -> the scripts that own it: the keys of the ``HELP`` table at the top
    of every script in ``root``, read from the source (nothing is imported), the common
    settings of :mod:`memfuse.cli` and :data:`OTHER_SETTINGS`."""
    owners: dict[str, list[str]] = {}
    for script in sorted(root.glob("*.py")):
        for node in ast.parse(script.read_text()).body:
            if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "HELP" for t in node.targets) and isinstance(node.value, ast.Dict):
                for key in node.value.keys:
                    if isinstance(key, ast.Constant) and isinstance(key.value, str):
                        owners.setdefault(key.value, []).append(script.name)
    from .cli import COMMON_HELP  # cli imports this module at load time

    for name in COMMON_HELP:
        owners.setdefault(name, []).append("every stage")
    for name, script in OTHER_SETTINGS.items():
        owners.setdefault(name, []).append(script)
    return {k: tuple(v) for k, v in owners.items()}


def did_you_mean(name: str, known: list[str] | set[str] | dict[str, Any], spell: Any = str) -> str:
    """``"; did you mean X?"`` for the known name nearest ``name`` (written by ``spell``), or ``""``."""
    near = difflib.get_close_matches(name, list(known), n=1)
    return f"; did you mean {spell(near[0])}?" if near else ""


def check_setting_names(names: list[str] | set[str], where: str) -> None:
    """``ValueError`` naming the first setting no script has, with the nearest known one."""
    known = known_settings()
    for name in names:
        if name not in known:
            raise ValueError(f"{where}: no stage has a setting {name}{did_you_mean(name, known)}")


def _read(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: not valid TOML ({exc})") from None
    settings = data.get("settings", {})
    if not isinstance(settings, dict):
        raise ValueError(f"{path}: [settings] must be a table of NAME = value")
    check_setting_names(list(settings), str(path))
    return data


def recipe_names() -> list[str]:
    """The recipes in ``config/recipes/``, the default first."""
    names = sorted(p.stem for p in (CONFIG_DIR / "recipes").glob("*.toml"))
    return sorted(names, key=lambda n: n != DEFAULT_RECIPE)


@lru_cache(maxsize=None)
def get_recipe(name: str) -> Recipe:
    """The recipe ``config/recipes/NAME.toml``; a ``ValueError`` listing the known ones
    otherwise (or naming a setting in it that no stage has)."""
    path = CONFIG_DIR / "recipes" / f"{name}.toml"
    if not name or "/" in name or "\\" in name or not path.is_file():
        raise ValueError(f"unknown recipe {name!r}; known recipes: {', '.join(recipe_names())}")
    data = _read(path)
    return Recipe(name, data.get("summary", ""), dict(data.get("settings", {})), data.get("preset"))


@lru_cache(maxsize=None)
def dataset_settings(name: str) -> dict[str, Any] | None:
    """The constants of ``config/datasets/NAME.toml``; ``None`` when there is no such file
    (the scripts' defaults apply)."""
    if not name or any(c in name for c in "/\\") or name.startswith("."):
        return None  # not a plain name: cli.check_dataset_name refuses it
    path = CONFIG_DIR / "datasets" / f"{name}.toml"
    return dict(_read(path).get("settings", {})) if path.is_file() else None
