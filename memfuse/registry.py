"""The pipeline's scripts: what each reads and writes, and which shared settings it takes.

One :class:`Stage` per script. The checkpoint stages (1-6) write into
``checkpoints/<dataset>/<recipe>/``; stage 0 (features) and the baseline write elsewhere.
A missing input names the stage that makes it (:func:`made_by`); ``run_all.py`` runs
:data:`STAGES` in order and knows from ``outputs`` whether one is complete.
"""

from __future__ import annotations

from dataclasses import dataclass

MODALITIES = ("app", "pose", "vel")  # the three modalities, named so in code, files and keys
MODALITY_NAMES = {"app": "appearance", "pose": "pose", "vel": "velocity"}  # for prose only (messages, titles)
MEMORY_MODALITIES = ("app", "pose")  # the two with a memory: stages 2-4 run once for each (a script and its twin)
PSEUDO_OUTPUTS = (
    "train_normal",
    "train_anomaly",
    "test_normal",
    "train_indices",
    "test_indices",
    "train_distance",
    "test_distance",
)


@dataclass(frozen=True)
class Stage:
    """One script of the pipeline.

    ``inputs``: the stages whose outputs it reads. ``data``: the dataset files it reads,
    as (split or None, what). ``outputs``: files it writes, relative to the recipe's
    checkpoint folder. ``shared``: the settings of :data:`memfuse.config.SHARED` it takes.
    ``twin_of``: a pose twin runs this script's ``main`` and settings with ``modality``."""

    script: str
    title: str
    inputs: tuple[str, ...] = ()
    data: tuple[tuple[str | None, str], ...] = ()
    outputs: tuple[str, ...] = ()
    shared: tuple[str, ...] = ()
    modality: str | None = None
    twin_of: str | None = None

    @property
    def settings_script(self) -> str:
        """The script whose globals hold this stage's settings (a twin's appearance script)."""
        return self.twin_of or self.script


def _twins(
    script: str,
    title: str,
    outputs: dict[str, tuple[str, ...]],
    inputs: dict[str, tuple[str, ...]],
    data: dict[str, tuple],
    shared: tuple[str, ...],
) -> tuple[Stage, Stage]:
    """A stage run once per modality: the appearance script and its pose twin."""
    twin = script.replace(".py", "_pose.py")
    return (
        Stage(
            script,
            title.format(MODALITY_NAMES["app"]),
            inputs["app"],
            data["app"],
            outputs["app"],
            shared,
            "app",
        ),
        Stage(
            twin,
            title.format(MODALITY_NAMES["pose"]),
            inputs["pose"],
            data["pose"],
            outputs["pose"],
            shared,
            "pose",
            script,
        ),
    )


STANDARDISED = ("CHECKPOINT_ROOT", "STANDARDISE")
MEMORY = ("CHECKPOINT_ROOT", "STANDARDISE", "TOP_K")
EVALUATION = ("SMOOTH_SIGMA", "SMOOTH_PER_VIDEO", "RESULTS_ROOT", "RESULTS_NAME")

EXTRACT = Stage("extract_features.py", "stage 0: AI-VAD-format features from raw frames or videos")
STAGES: tuple[Stage, ...] = (
    Stage(
        "AE_encoder.py",
        "stage 1: appearance autoencoder",
        (),
        (("train", "app"), ("test", "app")),
        (
            "autoencoder.pt",
            "app_train.npy",
            "app_test.npy",
            "app_train_recon.npy",
            "app_test_recon.npy",
        ),
        STANDARDISED,
    ),
    *_twins(
        "cluster.py",
        "stage 2: K-Means initialisation of the {} memory",
        {m: (f"memory_init_{m}.npy",) for m in MEMORY_MODALITIES},
        {"app": ("AE_encoder.py",), "pose": ()},
        {"app": (("train", "vel"),), "pose": (("train", "pose"),)},
        STANDARDISED,
    ),
    *_twins(
        "train.py",
        "stage 3: {} memory training",
        {m: (f"memory_{m}.pt",) for m in MEMORY_MODALITIES},
        {"app": ("cluster.py", "AE_encoder.py"), "pose": ("cluster_pose.py",)},
        {"app": (("train", "vel"),), "pose": (("train", "pose"),)},
        MEMORY,
    ),
    *_twins(
        "Pseudo_generators.py",
        "stage 4: pseudo-normal and pseudo-anomalous {} features",
        {m: tuple(f"pseudo_{m}_{n}.npy" for n in PSEUDO_OUTPUTS) for m in MEMORY_MODALITIES},
        {"app": ("train.py", "AE_encoder.py"), "pose": ("train_pose.py",)},
        {"app": (("train", "vel"), ("test", "vel")), "pose": (("train", "pose"), ("test", "pose"))},
        MEMORY,
    ),
    Stage(
        "calibrate.py",
        "stage 4c: held-out calibration of the memorised score terms",
        ("AE_encoder.py", "cluster.py", "cluster_pose.py", "train.py", "train_pose.py"),
        (
            ("train", "app"),
            ("train", "pose"),
            ("train", "vel"),
            ("train", "clip_lengths"),
            ("test", "app"),
            ("test", "vel"),
        ),
        ("heldout_meta.json",),
        STANDARDISED,
    ),
    Stage(
        "padding_mask.py",
        "stage 5: padded object sets and masks",
        ("Pseudo_generators.py", "Pseudo_generators_pose.py", "AE_encoder.py", "calibrate.py"),
        tuple((s, m) for s in ("train", "test") for m in ("vel", "pose")),
        ("padded/meta.json", "padded/test_vel_rel.npy"),
        ("CHECKPOINT_ROOT",),
    ),
    Stage(
        "attention_fusion.py",
        "stage 6: attention fusion, frame scores, evaluation",
        ("padding_mask.py",),
        (("test", "clip_lengths"), ("train", "clip_lengths"), ("test", "labels")),
        ("fusion.pt",),
        ("CHECKPOINT_ROOT", *EVALUATION),
    ),
)
BASELINE = Stage("baseline.py", "the AI-VAD density baseline on the same features", shared=EVALUATION)
BY_SCRIPT: dict[str, Stage] = {s.script: s for s in (EXTRACT, *STAGES, BASELINE)}
STAGE_ORDER: tuple[str, ...] = tuple(s.script for s in STAGES)
CONFIGURED_SCRIPTS: tuple[str, ...] = tuple(
    s for s in BY_SCRIPT if BY_SCRIPT[s].twin_of is None
)  # scripts with settings


def stage(script: str) -> Stage:
    """The :class:`Stage` of ``script`` (a file name such as ``"train_pose.py"``)."""
    try:
        return BY_SCRIPT[script]
    except KeyError:
        raise ValueError(f"unknown stage script {script!r}; known: {', '.join(BY_SCRIPT)}") from None


def for_modality(script: str, modality: str) -> Stage:
    """The stage that runs ``script``'s main for ``modality`` (``train.py``, pose -> ``train_pose.py``)."""
    return next(s for s in STAGES if s.settings_script == script and s.modality == modality)


def made_by(filename: str) -> str:
    """``python SCRIPT``: the stage that writes ``filename`` (a path in the checkpoint folder)."""
    for s in STAGES:
        if filename in s.outputs or any("/" in o and filename.startswith(o.split("/")[0] + "/") for o in s.outputs):
            return f"python {s.script}"
    return "the previous stage"


def upstream(script: str) -> list[str]:
    """Every stage whose outputs ``script`` depends on, directly or through others, in stage order."""
    needed, todo = set(), list(stage(script).inputs)
    while todo:
        name = todo.pop()
        if name not in needed:
            needed.add(name)
            todo += stage(name).inputs
    return [s for s in STAGE_ORDER if s in needed]
