"""Recipes and dataset constants (config/, memfuse.recipes) and how a stage applies them (memfuse.cli)."""
import importlib

import pytest

from memfuse import recipes
from memfuse.cli import COMMON_HELP, configure
from memfuse.recipes import DEFAULT_RECIPE, OTHER_SETTINGS, CONFIG_DIR, dataset_settings, get_recipe, known_settings, recipe_names

STAGES = ("AE_encoder", "cluster", "train", "Pseudo_generators", "padding_mask", "attention_fusion", "baseline")


def imported_settings() -> set[str]:
    names = set(COMMON_HELP) | set(OTHER_SETTINGS)
    for s in STAGES:
        names |= set(importlib.import_module(s).HELP)
    return names


def test_settings_read_from_the_scripts_source_are_those_the_scripts_define():
    assert set(known_settings()) == imported_settings()


def test_every_config_file_names_settings_of_some_stage():
    known = imported_settings()
    files = sorted(CONFIG_DIR.glob("*/*.toml"))
    assert {f.stem for f in files} >= {"memfuse", "paper", "reference", "ped2", "avenue", "shanghaitech", "synthetic"}
    for name in recipe_names():
        assert set(get_recipe(name).settings) <= known, name
    for f in (CONFIG_DIR / "datasets").glob("*.toml"):
        assert set(dataset_settings(f.stem)) <= known, f


@pytest.fixture
def config_dir(tmp_path, monkeypatch):
    (tmp_path / "recipes").mkdir()
    (tmp_path / "datasets").mkdir()
    monkeypatch.setattr(recipes, "CONFIG_DIR", tmp_path)
    for cached in (get_recipe, dataset_settings):
        cached.cache_clear()
    yield tmp_path
    for cached in (get_recipe, dataset_settings):
        cached.cache_clear()


def test_a_config_naming_an_unknown_setting_names_the_nearest(config_dir):
    (config_dir / "recipes" / "mine.toml").write_text('summary = "x"\n[settings]\nHEAD = "pool"\nHIDEN = 32\n')
    with pytest.raises(ValueError, match=r"mine.toml: no stage has a setting HIDEN; did you mean HIDDEN\?"):
        get_recipe("mine")
    (config_dir / "datasets" / "cam.toml").write_text("[settings]\nSMOOTH_SIGMA = [\n")
    with pytest.raises(ValueError, match="cam.toml: not valid TOML"):
        dataset_settings("cam")


def test_a_new_recipe_file_is_a_recipe(config_dir):
    (config_dir / "recipes" / "wide.toml").write_text('summary = "a wider head"\npreset = "quick"\n[settings]\nHIDDEN = 512\n')
    assert recipe_names() == ["wide"] and get_recipe("wide").settings == {"HIDDEN": 512} and get_recipe("wide").preset == "quick"


def test_a_dataset_without_a_config_file_says_so(capsys):
    configure({"SMOOTH_SIGMA": 3.0}, {"SMOOTH_SIGMA": "sigma"}, "test", ["--dataset", "mycamera"])
    assert "no config/datasets/mycamera.toml" in capsys.readouterr().err
    configure({"SMOOTH_SIGMA": 3.0}, {"SMOOTH_SIGMA": "sigma"}, "test", ["--dataset", "ped2"])
    assert "no config" not in capsys.readouterr().err


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
    assert recipe_names()[0] == DEFAULT_RECIPE
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
