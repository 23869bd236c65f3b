"""Stage 0 and detect.py on a Ray cluster (``--ray ADDRESS``).

detect.py's unit of work is one source: a :class:`SourceWorker` actor (one CPU) loads the
detector on its node and scores the source into the output folder, which every node must
see as stage 0's data; its alarm events go to ``DIR/<source>.events.jsonl`` as they end,
and the driver gathers them into ``DIR/events.jsonl`` when the source is done. An actor
(rather than a task) because a camera's source lives as long as its stream, and Ctrl-C
reaches it as :meth:`SourceWorker.stop`, which closes its CSV and video as a local run
does.

Stage 0's unit of work is one video: :func:`extract_remote` runs
:func:`memfuse.extract.pipeline.process_video` on a worker and writes that video's
features into the split's per-video cache (``.videos/NAME.pkl``, written atomically) on the
file system every node sees. The task is idempotent: a retried task, or a rerun of the
split, finds the file and does nothing, so a worker killed mid-video costs that video's
work once more and leaves nothing half-written. The driver (extract_features.py on the
machine that runs it) waits for the tasks, moves one progress bar of frames over the
cluster, and assembles the split's AI-VAD arrays from the per-video files in video order,
exactly as the local pool's.

Ray is imported only here and only when ``--ray`` is given (``requirements-ray.txt``).
Addresses: ``local`` (a Ray instance started in this process, on this machine's CPUs),
``auto`` (the cluster ``ray start`` runs on this machine) or ``HOST:PORT`` (a head's GCS
port). The code reaches the workers by ``PYTHONPATH`` set to this project's folder, so the
project, like the data, must sit at the same path on every node (a shared file system).
"""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from .io import PROJECT_ROOT, InputError

if TYPE_CHECKING:
    from .detection import DetectOptions, Given
    from .extract.pipeline import ExtractSettings, VideoCache, VideoJob
    from .sources import Source

RAY_INSTALL = "pip install -r requirements-ray.txt"
# How many times Ray reruns a task whose worker died (killed, out of memory, node lost).
# A task that raised (a video it cannot read) is not retried: the error is the answer.
TASK_RETRIES = 3
CONNECT_TIMEOUT_S = 5.0  # a HOST:PORT that does not answer in this long is reported, before any work
POLL_S = 1.0  # the driver's progress bar moves at least this often
# Fault injection for the tests and the benchmark: with this variable set (in the driver's
# environment) to a video's name, the worker extracting that video kills itself (SIGKILL,
# as the kernel's OOM killer would) at frame FAULT_AT_FRAME of the task's first attempt; a
# marker file in the cache folder says the first attempt happened.
FAULT_ENV = "MEMFUSE_RAY_KILL_VIDEO"
FAULT_AT_FRAME = 5


def import_ray() -> Any:
    """The ``ray`` module, or an :class:`InputError` with the install line."""
    try:
        import ray
    except ImportError:
        raise InputError(f"--ray needs Ray, which is not installed here: {RAY_INSTALL}") from None
    return ray


def _reachable(address: str) -> None:
    """Raise :class:`InputError` unless something listens at ``HOST:PORT``."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise InputError(
            f"--ray {address}: expected local, auto or HOST:PORT (a Ray head's GCS port, e.g. 10.0.0.1:6379)"
        )
    try:
        with socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        raise InputError(
            f"--ray {address}: no Ray cluster answers there ({exc.strerror or exc}); start its head with "
            f"`ray start --head --port {port}` or give the address `ray start` printed"
        ) from None


def check_address(address: str) -> None:
    """Before any work: Ray importable and, for ``HOST:PORT``, something listening there."""
    import_ray()
    if address not in ("local", "auto"):
        _reachable(address)


def connect(address: str, *, local_cpus: int | None = None) -> Any:
    """Join (or, for ``local``, start) the Ray cluster at ``address``; returns ``ray``.

    ``local_cpus``: the CPUs of a ``local`` instance (None: all). Raises
    :class:`InputError` naming the address when no cluster answers, before any work."""
    ray = import_ray()
    if ray.is_initialized():
        return ray
    path = os.pathsep.join(p for p in (str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")) if p)
    common = {
        "runtime_env": {"env_vars": {"PYTHONPATH": path}},
        "include_dashboard": False,
        "log_to_driver": True,
        "configure_logging": False,
    }
    if address == "local":
        ray.init(num_cpus=local_cpus, **common)
        return ray
    if address != "auto":
        _reachable(address)
    try:
        ray.init(address=address, **common)
    except (ConnectionError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"--ray {address}: cannot join the cluster: {first}") from None
    return ray


class Progress:
    """Frames done per video over the cluster (a Ray actor). A retried video starts again
    from 0, so the total never counts a frame twice."""

    def __init__(self) -> None:
        self.frames: dict[str, int] = {}

    def start(self, name: str) -> None:
        self.frames[name] = 0

    def add(self, name: str, n: int) -> None:
        self.frames[name] = self.frames.get(name, 0) + n

    def total(self) -> int:
        return sum(self.frames.values())


def _fault_tick(
    job: VideoJob, cache_folder: Path, tick: Callable[[int], None], fault: str | None
) -> Callable[[int], None]:
    """``tick`` that kills this worker at :data:`FAULT_AT_FRAME` of the first attempt on the
    video named ``fault`` (the driver's :data:`FAULT_ENV`; None: no fault)."""
    if fault != job.video.name:
        return tick
    marker = Path(cache_folder) / f".{job.video.name}.attempted"
    if marker.exists():
        return tick
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.touch()
    seen = [0]

    def dying(n: int) -> None:
        seen[0] += n
        tick(n)
        if seen[0] >= FAULT_AT_FRAME:
            os.kill(os.getpid(), signal.SIGKILL)

    return dying


def extract_video(
    job: VideoJob,
    settings: ExtractSettings,
    cache_folder: str,
    cache_key: dict,
    progress: Any = None,
    fault: str | None = None,
) -> dict:
    """One video's stage 0 on a worker: its features into the per-video cache (atomically),
    unless a finished attempt already put them there. Returns a small summary (name,
    frames, seconds, node); the driver reads the features from the cache. ``progress``: the
    :class:`Progress` actor (None: no reports); ``fault``: see :data:`FAULT_ENV`."""
    from .extract import pipeline as P

    cache = P.VideoCache(Path(cache_folder), cache_key)
    kept = cache.get(job.video.name)
    node = socket.gethostname()
    if kept is not None:
        return {"name": job.video.name, "frames": kept["frames"], "seconds": 0.0, "node": node, "kept": True}
    source = job.video.path if job.video.frames is None else job.video.frames[0]
    if not Path(source).exists():
        raise InputError(
            f"node {node}: cannot read {source}: every node must see the data at the path the driver gave "
            "(a shared file system mounted at the same place)"
        )
    if P.worker_settings() != settings:
        P.init_worker(settings, threads=1)
    if progress is not None:
        progress.start.remote(job.video.name)
        tick = lambda n: progress.add.remote(job.video.name, n)  # noqa: E731
    else:
        tick = lambda n: None  # noqa: E731
    P.set_worker_tick(_fault_tick(job, Path(cache_folder), tick, fault))
    result = P.process_video(job)
    cache.put(result)
    return {"name": job.video.name, "frames": result["frames"], "seconds": result["seconds"], "node": node}


def run_videos(
    todo: list[VideoJob],
    settings: ExtractSettings,
    *,
    cache: VideoCache,
    bar: Any,
    kept: int,
    address: str,
    gpus_per_task: float = 0.0,
) -> list[dict]:
    """The results of ``todo`` in order, each made by one Ray task on the cluster at
    ``address`` and read back from ``cache``. ``bar``: the split's progress bar (``kept``
    frames of it done before). Each task asks for one CPU (and ``gpus_per_task`` GPUs)."""
    ray = connect(address, local_cpus=settings.workers)
    progress = ray.remote(num_cpus=0)(Progress).remote()
    task = ray.remote(extract_video).options(
        num_cpus=1, num_gpus=gpus_per_task, max_retries=TASK_RETRIES, retry_exceptions=False
    )
    fault = os.environ.get(FAULT_ENV)
    refs = [task.remote(job, settings, str(cache.folder), cache.settings, progress, fault) for job in todo]
    index = {ref: i for i, ref in enumerate(refs)}
    fresh: list[dict | None] = [None] * len(todo)
    pending = list(refs)
    while pending:
        ready, pending = ray.wait(pending, num_returns=len(pending), timeout=POLL_S)
        for ref in ready:
            i = index[ref]
            summary = _result(ray, ref, todo[i])
            fresh[i] = cache.get(summary["name"])
            if fresh[i] is None:
                raise InputError(
                    f"--ray {address}: {todo[i].video.where} was extracted on node {summary['node']} but its "
                    f"features are not in {cache.folder} here: the nodes do not share that folder"
                )
            bar.set_postfix_str(f"{summary['name']}: {summary['frames']} frames on {summary['node']}")
        bar.update(kept + ray.get(progress.total.remote()) - bar.n)
    return fresh  # type: ignore[return-value]


def _result(ray: Any, ref: Any, job: VideoJob) -> dict:
    """A finished task's summary; its error as one line (an :class:`InputError` as it was
    raised; a worker that died every retry named with its video)."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        if isinstance(exc.cause, InputError):
            raise exc.cause from None
        raise
    except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError) as exc:
        raise InputError(
            f"--ray: the worker extracting {job.video.where} died {TASK_RETRIES + 1} times "
            f"({type(exc).__name__}); see the cluster's logs (ray logs) and rerun: finished videos are kept"
        ) from None


class SourceWorker:
    """One detect.py source on a Ray worker (module doc). A threaded actor
    (``max_concurrency=2``), so :meth:`stop` is heard while :meth:`run` works."""

    def __init__(self, options: DetectOptions, threads: int = 1) -> None:
        import cv2
        import torch

        from .detection import Scorer

        torch.set_num_threads(threads)
        cv2.setNumThreads(threads)
        self.scorer = Scorer(options)
        self.source: Source | None = None

    def run(self, source: Source, out_dir: str, given: Given | None) -> dict:
        """Score ``source`` (its own part of any given boxes and poses); its report as a dict."""
        self.source = source
        out = Path(out_dir)
        with open(out / f"{source.name}.events.jsonl", "w") as events:
            r = self.scorer.run(source, out, given=given, events_file=events)
        return {**r.__dict__, "fps": round(r.fps, 2), "node": socket.gethostname()}

    def stop(self) -> None:
        if self.source is not None:
            self.source.interrupt()


def detect_sources(
    sources: list[Source],
    options: DetectOptions,
    out_dir: Path,
    *,
    given: list[Given | None],
    address: str,
) -> list[dict]:
    """detect.py's sources scored in parallel, one :class:`SourceWorker` each, on the
    cluster at ``address``; the reports in source order. Each source's events are appended
    to ``out_dir/events.jsonl`` as it finishes. Ctrl-C stops every actor, which close their
    files, and returns the reports so far."""
    from .detection import SourceReport, report_line

    ray = connect(address, local_cpus=min(len(sources), os.cpu_count() or 1))
    actor = ray.remote(num_cpus=1, max_concurrency=2, max_restarts=TASK_RETRIES, max_task_retries=TASK_RETRIES)
    workers = [actor(SourceWorker).remote(options) for _ in sources]
    refs = [w.run.remote(src, str(out_dir), g) for w, src, g in zip(workers, sources, given)]
    index = {ref: i for i, ref in enumerate(refs)}
    reports: list[dict | None] = [None] * len(sources)
    pending = list(refs)

    def gather(ready: list) -> None:
        for ref in ready:
            i = index[ref]
            r = _detect_result(ray, ref, sources[i])
            reports[i] = r
            print(report_line(SourceReport(**{k: v for k, v in r.items() if k not in ("fps", "node")})))
            part = Path(out_dir) / f"{sources[i].name}.events.jsonl"
            with open(Path(out_dir) / "events.jsonl", "a") as events:
                events.write(part.read_text())

    try:
        while pending:
            ready, pending = ray.wait(pending, num_returns=1, timeout=None)
            gather(ready)
    except KeyboardInterrupt:
        print(f"[detect] interrupted: stopping {len(pending)} source(s); their files hold the frames scored")
        for w in workers:
            w.stop.remote()
        ray.wait(pending, num_returns=len(pending))
        gather(pending)
    return [r for r in reports if r is not None]


def _detect_result(ray: Any, ref: Any, source: Source) -> dict:
    """A finished actor call's report; its error as one line."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        if isinstance(exc.cause, InputError):
            raise exc.cause from None
        raise
    except ray.exceptions.RayActorError as exc:
        raise InputError(
            f"--ray: the actor scoring {source.describe()} died {TASK_RETRIES + 1} times ({type(exc).__name__}); "
            "see the cluster's logs (ray logs)"
        ) from None
