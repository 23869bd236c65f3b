"""Settings: plain globals at the top of each script, overridden by config files and flags.

A script declares its settings as upper-case globals with a help line each in ``HELP``.
The globals hold the default recipe's values (``memfuse``), so the top of a script is what
runs. :func:`configure` makes each a flag (``FUSION_EPOCHS`` -> ``--fusion-epochs``) and
applies, each layer over the one before: the globals; ``config/datasets/DATASET.toml``
(AI-VAD's per-dataset constants); ``--recipe NAME`` (``config/recipes/NAME.toml``);
``--config FILE,...`` (any TOML file of settings, e.g. ``config/schedules/paper.toml``);
the flags. Every setting has one owner: the script whose top declares it, or this module
(:data:`COMMON`, taken by every script, and :data:`SHARED`, by the scripts that
:mod:`memfuse.registry` names). A name no script has is refused with the nearest known one.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import sys
import tomllib
from functools import lru_cache
from pathlib import Path
from typing import Any

from . import registry
from .io import PROJECT_ROOT, InputError

CONFIG_DIR = PROJECT_ROOT / "config"
DEFAULT_RECIPE = "memfuse"
COMMON: dict[str, tuple[Any, str]] = {  # name -> (default, help)
    "DATASET": ("synthetic", "dataset name; synthetic: the demo data, made when missing"),
    "DATA_ROOT": ("data", "folder holding DATASET/ (AI-VAD's feature format, or raw frames or videos for stage 0)"),
    "DEVICE": ("auto", "auto (cuda if available), cpu or cuda"),
    "SEED": (0, "random seed of torch, numpy and python (and of the synthetic data when they are made)"),
    "RECIPE": (DEFAULT_RECIPE, "settings applied over the globals: config/recipes/NAME.toml"),
    "CONFIG": ("", "more TOML files of settings, comma-separated, applied after the recipe"),
}
SHARED: dict[str, tuple[Any, str]] = {
    "STANDARDISE": (True, "z-score appearance (before the autoencoder) and pose (before its memory), fit on train"),
    "TOP_K": (5, "k nearest memory items: mixed by the compactness loss and the pseudo-normal features"),
    "CHECKPOINT_ROOT": ("checkpoints", "stage outputs go to CHECKPOINT_ROOT/DATASET/RECIPE/"),
    "SMOOTH_SIGMA": (3.0, "Gaussian sigma of frame-score smoothing, in frames (0 = none)"),
    "SMOOTH_PER_VIDEO": (True, "smooth each test video alone (--no-smooth-per-video: the reference's whole sequence)"),
    "RESULTS_ROOT": ("results", "folder of the results/ tree"),
    "RESULTS_NAME": ("", "write results to RESULTS_ROOT/RESULTS_NAME instead of RESULTS_ROOT/DATASET"),
}
PROVENANCE_CHECKED = ("RECIPE", "STANDARDISE")  # a stage refuses inputs made with other values of these


def flag_name(name: str) -> str:
    return "--" + name.lower().replace("_", "-")


def as_flags(settings: dict[str, Any]) -> list[str]:
    """{NAME: value} -> the flags that set them: ``--name value``, a bool ``--name`` or ``--no-name``."""
    out: list[str] = []
    for name, value in settings.items():
        flag = flag_name(name)
        out += [flag if value else "--no-" + flag[2:]] if isinstance(value, bool) else [flag, str(value)]
    return out


def did_you_mean(name: str, known: Any) -> str:
    """``"; did you mean X?"`` for the known name nearest ``name``, or ``""``."""
    near = difflib.get_close_matches(name, list(known), n=1)
    return f"; did you mean {near[0]}?" if near else ""


@lru_cache(maxsize=None)
def script_settings(script: str) -> dict[str, Any]:
    """``script``'s settings and defaults: the common and shared ones it takes, then the
    globals named in its ``HELP``, read by importing it (the one way settings are found)."""
    st = registry.stage(script)
    if str(PROJECT_ROOT) not in sys.path:  # the scripts live at the project root
        sys.path.insert(0, str(PROJECT_ROOT))
    module = importlib.import_module(Path(st.settings_script).stem)
    taken = {n: v[0] for n, v in {**COMMON, **SHARED}.items() if n in COMMON or n in st.shared}
    return {**taken, **{n: getattr(module, n) for n in module.HELP}}


@lru_cache(maxsize=None)
def known_settings() -> dict[str, tuple[str, ...]]:
    """setting name -> the scripts that take it."""
    scripts = registry.CONFIGURED_SCRIPTS
    names = dict.fromkeys(n for s in scripts for n in script_settings(s))
    return {n: tuple(s for s in scripts if n in script_settings(s)) for n in names}


def read_settings(path: Path | str) -> dict[str, Any]:
    """The ``[settings]`` of a TOML file, after those of ``extends = "RECIPE"`` if it names one."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except OSError:
        raise InputError(f"{path}: no such config file") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path}: not valid TOML ({exc})") from None
    settings, known = data.get("settings", {}), known_settings()
    for name in settings:
        if name not in known:
            raise InputError(f"{path}: no script has a setting {name}{did_you_mean(name, known)}")
    return {**(read_settings(recipe_path(data["extends"])) if "extends" in data else {}), **settings}


def recipe_names() -> list[str]:
    """The recipes in ``config/recipes/``, the default first."""
    return sorted((p.stem for p in (CONFIG_DIR / "recipes").glob("*.toml")), key=lambda n: (n != DEFAULT_RECIPE, n))


def recipe_path(name: str) -> Path:
    path = CONFIG_DIR / "recipes" / f"{name}.toml"
    if not name or "/" in name or "\\" in name or not path.is_file():
        raise InputError(f"unknown recipe {name!r}; known recipes: {', '.join(recipe_names())}")
    return path


def dataset_settings(dataset: str) -> dict[str, Any] | None:
    """The constants of ``config/datasets/DATASET.toml``; ``None`` when there is no such file."""
    path = CONFIG_DIR / "datasets" / f"{check_dataset_name(dataset)}.toml"
    return read_settings(path) if path.is_file() else None


def check_dataset_name(name: str) -> str:
    """A dataset name is a plain folder name: outputs go to checkpoints/NAME and results/NAME."""
    if not name or any(c in name for c in "/\\") or name.startswith(("~", ".")):
        raise InputError(f"--dataset {name!r}: a dataset is a plain name (no path separators, no '..')")
    return name


def parser_for(
    defaults: dict[str, Any], help_lines: dict[str, str], types: dict | None = None, **kw
) -> argparse.ArgumentParser:
    """One flag per setting, typed by ``types`` (default: the defaults; bool: ``--x`` / ``--no-x``)."""
    parser = argparse.ArgumentParser(allow_abbrev=False, formatter_class=argparse.ArgumentDefaultsHelpFormatter, **kw)
    for name, default in defaults.items():
        typed = (types or defaults)[name]
        kind = {"action": argparse.BooleanOptionalAction} if isinstance(typed, bool) else {"type": type(typed)}
        if name == "RECIPE":
            kind["choices"] = recipe_names()
        text = help_lines.get(name) or {**COMMON, **SHARED}.get(name, (None, ""))[1]
        parser.add_argument(flag_name(name), dest=name, default=default, help=text, **kind)
    return parser


def configure(
    g: dict[str, Any],
    script: str,
    argv: list[str] | None = None,
    *,
    description: str = "",
    prog: str | None = None,
    quiet: bool = False,
) -> dict[str, Any]:
    """Apply the config layers and the flags ``argv`` to the script globals ``g`` (adding the
    common and shared settings ``script`` takes). Returns the settings as they run, for the
    record, and prints a line for each layer that changes a value unless ``quiet``. Exits
    with a one-line error for an unknown flag (naming the nearest), a bad value or file."""
    defaults, prog = script_settings(script), prog or script
    for name, default in defaults.items():
        g.setdefault(name, default)
    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    for name in ("RECIPE", "DATASET", "CONFIG"):
        pre.add_argument(flag_name(name), default=g[name])
    known, _ = pre.parse_known_args(argv)
    try:
        constants = dataset_settings(known.dataset)
        layers = [(f"config/datasets/{known.dataset}.toml", constants or {})]
        layers += [(f"recipe {known.recipe}", read_settings(recipe_path(known.recipe)))]
        layers += [(path, read_settings(path)) for path in known.config.split(",") if path.strip()]
    except InputError as exc:
        raise SystemExit(f"{prog}: error: {exc}") from None
    if constants is None and not quiet:
        print(f"[config] no config/datasets/{known.dataset}.toml: the scripts' defaults apply", file=sys.stderr)
    for where, values in layers:
        changed = {k: v for k, v in values.items() if k in defaults and g[k] != v}
        g.update(changed)
        if changed and not quiet:
            print(f"[config] {where}: " + ", ".join(f"{k}={v!r}" for k, v in changed.items()), file=sys.stderr)
    g["RECIPE"] = known.recipe
    # typed by the script's own defaults: a config file's 2 for a float setting still takes --flag 1.5
    parser = parser_for({n: g[n] for n in defaults}, g["HELP"], defaults, prog=prog, description=description)
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        flags = [a.option_strings[0] for a in parser._actions if a.option_strings]
        parser.error(f"unknown flag {unknown[0]}{did_you_mean(unknown[0].split('=')[0], flags)}")
    if not 0 <= args.SEED < 2**32:  # what numpy and torch both take
        parser.error(f"--seed {args.SEED}: a seed is an integer from 0 to 2**32 - 1")
    g.update(vars(args))
    return {n: g[n] for n in defaults}
