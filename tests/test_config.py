"""Settings (memfuse.config): the scripts' globals, the config layers over them, and the flags."""

import importlib

import pytest

from memfuse import config, registry
from memfuse.io import InputError


def fresh(script: str) -> dict:
    """A copy of a script's globals, as configure() would see them on a fresh run."""
    return dict(vars(importlib.import_module(script.removesuffix(".py"))))


def test_every_setting_has_one_name_and_one_owner():
    owners = config.known_settings()
    own = {}
    for script in registry.CONFIGURED_SCRIPTS:
        for name in importlib.import_module(script.removesuffix(".py")).HELP:
            assert name not in own, f"{name} is declared by {own[name]} and {script}"
            assert name not in config.COMMON and name not in config.SHARED, f"{script} redeclares {name}"
            own[name] = script
    assert set(owners) == set(own) | set(config.COMMON) | set(config.SHARED)
    assert owners["STANDARDISE"] == ("AE_encoder.py", "cluster.py", "train.py", "Pseudo_generators.py", "calibrate.py")
    assert owners["SMOOTH_SIGMA"] == ("attention_fusion.py", "baseline.py")


def test_the_globals_are_the_default_recipe_and_what_runs():
    g = fresh("attention_fusion.py")
    settings = config.configure(g, "attention_fusion.py", [], quiet=True)
    assert settings["HEAD"] == "pool" and settings["HIDDEN"] == 64 and settings["FUSION_EPOCHS"] == 200
    assert settings["RECIPE"] == "memfuse" and "STANDARDISE" not in settings  # the fusion does not take it
    g = fresh("attention_fusion.py")
    g["HIDDEN"] = 24  # an edit at the top of the script
    assert config.configure(g, "attention_fusion.py", [], quiet=True)["HIDDEN"] == 24 and g["HIDDEN"] == 24


def test_a_recipe_overlays_the_globals_and_a_flag_still_wins():
    g = fresh("attention_fusion.py")
    config.configure(g, "attention_fusion.py", ["--recipe", "paper"], quiet=True)
    assert g["HEAD"] == "flatten" and g["HIDDEN"] == 256 and g["SCORE_TERMS"] == "classifier" and g["RECIPE"] == "paper"
    g = fresh("attention_fusion.py")
    config.configure(g, "attention_fusion.py", ["--recipe", "paper", "--head", "pool"], quiet=True)
    assert g["HEAD"] == "pool" and g["HIDDEN"] == 256
    g = fresh("AE_encoder.py")
    config.configure(g, "AE_encoder.py", ["--recipe", "reference"], quiet=True)  # extends paper
    assert g["STANDARDISE"] is False


def test_config_files_apply_after_the_recipe_in_order(tmp_path):
    a, b = tmp_path / "a.toml", tmp_path / "b.toml"
    a.write_text("[settings]\nFUSION_EPOCHS = 7\nHIDDEN = 8\n")
    b.write_text("[settings]\nHIDDEN = 9\n")
    g = fresh("attention_fusion.py")
    config.configure(g, "attention_fusion.py", ["--recipe", "paper", "--config", f"{a},{b}"], quiet=True)
    assert g["FUSION_EPOCHS"] == 7 and g["HIDDEN"] == 9 and g["HEAD"] == "flatten"
    schedule = config.read_settings(config.CONFIG_DIR / "schedules" / "paper.toml")
    assert schedule == {"AE_EPOCHS": 1000, "MEMORY_EPOCHS": 5000, "FUSION_EPOCHS": 2000}


def test_an_unknown_setting_in_a_config_file_or_flag_names_the_nearest(tmp_path, capsys):
    bad = tmp_path / "mine.toml"
    bad.write_text('[settings]\nHEAD = "pool"\nHIDEN = 32\n')
    with pytest.raises(InputError, match=r"mine.toml: no script has a setting HIDEN; did you mean HIDDEN\?"):
        config.read_settings(bad)
    with pytest.raises(SystemExit, match="did you mean HIDDEN"):
        config.configure(fresh("attention_fusion.py"), "attention_fusion.py", ["--config", str(bad)], quiet=True)
    with pytest.raises(SystemExit):
        config.configure(fresh("attention_fusion.py"), "attention_fusion.py", ["--hiden", "3"], quiet=True)
    assert "did you mean --hidden" in capsys.readouterr().err
    (tmp_path / "broken.toml").write_text("[settings]\nSMOOTH_SIGMA = [\n")
    with pytest.raises(InputError, match="broken.toml: not valid TOML"):
        config.read_settings(tmp_path / "broken.toml")


def test_every_config_file_names_settings_of_some_script():
    files = sorted(config.CONFIG_DIR.glob("*/*.toml"))
    assert {f.stem for f in files} >= {
        "memfuse",
        "paper",
        "reference",
        "ped2",
        "avenue",
        "shanghaitech",
        "synthetic",
        "tiny",
    }
    for f in files:
        assert set(config.read_settings(f)) <= set(config.known_settings()), f
    assert config.read_settings(config.recipe_path("memfuse")) == {}  # the globals are memfuse
    assert config.recipe_names()[0] == config.DEFAULT_RECIPE


def test_unknown_recipe_lists_the_known_ones():
    with pytest.raises(InputError, match="memfuse, paper, reference"):
        config.recipe_path("nope")


def test_dataset_constants_apply_under_the_flags(capsys):
    g = fresh("baseline.py")
    config.configure(g, "baseline.py", ["--dataset", "shanghaitech"])
    assert g["GMM_COMPONENTS"] == 5 and g["SMOOTH_SIGMA"] == 7.0
    assert "config/datasets/shanghaitech.toml: GMM_COMPONENTS=5, SMOOTH_SIGMA=7.0" in capsys.readouterr().err
    g = fresh("baseline.py")
    config.configure(g, "baseline.py", ["--dataset", "avenue", "--smooth-sigma", "1"], quiet=True)
    assert g["GMM_COMPONENTS"] == 5 and g["SMOOTH_SIGMA"] == 1.0
    g = fresh("baseline.py")
    config.configure(g, "baseline.py", ["--dataset", "mycamera"])
    assert g["GMM_COMPONENTS"] == 2 and "no config/datasets/mycamera.toml" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["../x", "/abs/path", "a/b", ".."])
def test_dataset_names_are_plain_names(name):
    with pytest.raises(SystemExit):
        config.configure(fresh("baseline.py"), "baseline.py", ["--dataset", name], quiet=True)


def test_pose_twins_are_declared_and_run_their_scripts_settings():
    for script in ("cluster.py", "train.py", "Pseudo_generators.py"):
        twin = registry.for_modality(script, "pose")
        assert twin.script == script.replace(".py", "_pose.py") and twin.twin_of == script
        assert config.script_settings(twin.script) == config.script_settings(script)
    assert registry.made_by("memory_pose.pt") == "python train_pose.py"
    assert (
        registry.upstream("padding_mask.py")[0] == "AE_encoder.py"
        and len(registry.upstream("attention_fusion.py")) == 9
    )
