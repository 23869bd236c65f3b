"""Named recipes: every setting they name belongs to a stage, and --recipe applies them."""
import importlib
from pathlib import Path

import pytest

from memfuse.cli import COMMON_HELP, configure
from memfuse.recipes import DEFAULT_RECIPE, RECIPES, get_recipe

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("AE_encoder", "cluster", "train", "Pseudo_generators", "padding_mask", "attention_fusion")


def stage_settings() -> set[str]:
    names = set(COMMON_HELP)
    for s in STAGES:
        names |= set(importlib.import_module(s).HELP)
    return names


def test_every_recipe_setting_is_a_setting_of_some_stage():
    known = stage_settings()
    for recipe in RECIPES.values():
        assert set(recipe.settings) <= known, (recipe.name, set(recipe.settings) - known)


def test_recipe_sets_defaults_and_a_flag_still_wins():
    g = {"HEAD": "flatten", "EPOCHS": 3}
    help_lines = {"HEAD": "head", "EPOCHS": "epochs"}
    configure(g, help_lines, "test", ["--recipe", "memfuse"])
    assert g["HEAD"] == "pool" and g["RECIPE"] == "memfuse" and g["STANDARDISE"] is True
    g = {"HEAD": "flatten", "EPOCHS": 3}
    configure(g, help_lines, "test", ["--recipe", "memfuse", "--head", "flatten"])
    assert g["HEAD"] == "flatten"
    g = {"HEAD": "flatten", "EPOCHS": 3}
    configure(g, help_lines, "test", ["--recipe", "paper"])
    assert g["HEAD"] == "flatten" and g["STANDARDISE"] is False


def test_default_recipe_and_unknown_names():
    assert DEFAULT_RECIPE == "memfuse" and get_recipe("paper").settings == {}
    with pytest.raises(ValueError, match="memfuse, paper, reference"):
        get_recipe("nope")


def test_dataset_constants_apply_under_the_flags():
    g = {"GMM_COMPONENTS": 2, "SMOOTH_SIGMA": 3.0}
    help_lines = {"GMM_COMPONENTS": "gmm", "SMOOTH_SIGMA": "sigma"}
    configure(g, help_lines, "test", ["--dataset", "shanghaitech"])
    assert g["GMM_COMPONENTS"] == 5 and g["SMOOTH_SIGMA"] == 7.0
    configure(g, help_lines, "test", ["--dataset", "avenue", "--smooth-sigma", "1"])
    assert g["GMM_COMPONENTS"] == 5 and g["SMOOTH_SIGMA"] == 1.0
    g = {"GMM_COMPONENTS": 2, "SMOOTH_SIGMA": 3.0}
    configure(g, help_lines, "test", ["--dataset", "mine"])  # no constants: the scripts' defaults
    assert g["GMM_COMPONENTS"] == 2 and g["SMOOTH_SIGMA"] == 3.0


@pytest.mark.parametrize("name", ["../x", "/abs/path", "a/b", ".."])
def test_dataset_names_are_plain_names(name):
    with pytest.raises(SystemExit):
        configure({}, {}, "test", ["--dataset", name])
