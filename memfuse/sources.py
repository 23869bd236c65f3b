"""Where detect.py's frames come from: video files, folders of frames, cameras and streams.

:func:`expand` turns the command line's SOURCE arguments into :class:`Source` objects: a
video file; a folder of frame images (one video); a folder of videos or of frame folders
(one source each, sorted, as stage 0 lists a split); a camera index (``0``); or a stream
URL (``rtsp://...``, anything OpenCV's VideoCapture opens).

:meth:`Source.frames` yields ``(index, rgb)``. A file is read frame by frame, none dropped.
A live source (a camera, a stream, or a file with ``live=True``, which plays it at its own
frame rate) is read by a thread into a buffer of :data:`LIVE_BUFFER` frames: a slow frame
(one whose persons are posed) is absorbed, and when scoring falls behind for longer the
oldest frames are dropped and counted (``dropped``), so the detector stays current. A live
source that stops is reopened with back-off (:data:`RECONNECT_DELAYS_S`), then given up with
one line.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from .extract.frames import FRAME_EXTENSIONS, VIDEO_EXTENSIONS, list_videos, read_frame, rgb_from_bgr
from .io import InputError

RECONNECT_DELAYS_S = (0.5, 1.0, 2.0, 4.0, 8.0)  # waits before each reopening of a stopped live source
LIVE_BUFFER = 8  # frames a live source holds for the scorer: 0.3 s at 25 frames/s, the most it lags
STALL_S = 10.0  # a live source with no new frame for this long counts as stopped


@dataclass
class Source:
    """One source of frames. ``kind``: "file", "frames", "camera" or "stream"."""

    name: str
    kind: str
    target: str | int | list[Path]  # path, camera index or URL; frame files for "frames"
    live: bool = False
    fps: float | None = None  # the container's, when it gives one
    dropped: int = 0
    reconnects: int = 0
    waiting: int = 0  # live: frames read and not yet taken (0: the consumer is keeping up)
    interrupted: bool = False  # stopped by :meth:`interrupt` before its end
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)

    def __getstate__(self) -> dict:  # a Ray actor gets the source, not its reader's event
        state = self.__dict__.copy()
        del state["_stop"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._stop = threading.Event()

    def open(self) -> cv2.VideoCapture:
        cap = cv2.VideoCapture(self.target if isinstance(self.target, int) else str(self.target))
        if not cap.isOpened():
            raise InputError(f"{self.describe()}: OpenCV cannot open it")
        fps = cap.get(cv2.CAP_PROP_FPS)
        if fps and np.isfinite(fps) and 0 < fps < 1000:
            self.fps = float(fps)
        return cap

    def describe(self) -> str:
        return {"camera": f"camera {self.target}", "frames": f"frames folder {self.name}"}.get(
            self.kind, str(self.target)
        )

    def frames(self) -> Iterator[tuple[int, np.ndarray]]:
        """``(index, rgb)`` of each frame read: (H, W, 3) uint8 RGB; the index counts frames
        of the source, dropped ones included."""
        if self.kind == "frames":
            for t, path in enumerate(self.target):
                if self._stop.is_set():
                    return
                yield t, read_frame(path, self.name)
            return
        if not self.live:
            cap = self.open()
            t = 0
            try:
                while not self._stop.is_set():
                    ok, bgr = cap.read()
                    if not ok:
                        break
                    yield t, rgb_from_bgr(bgr)
                    t += 1
            finally:
                cap.release()
            if t == 0:
                raise InputError(f"{self.describe()}: no frame could be decoded")
            return
        yield from self._live()

    def stop(self) -> None:
        self._stop.set()

    def interrupt(self) -> None:
        """Stop reading from another thread (a Ray actor told to stop): the run ends after
        the frame in hand, as on Ctrl-C, and reports itself interrupted."""
        self.interrupted = True
        self._stop.set()

    def frame_count(self) -> int | None:
        """Frames of a frame folder, the only kind whose length is known before reading it
        (None for the others)."""
        return len(self.target) if self.kind == "frames" else None

    def _live(self) -> Iterator[tuple[int, np.ndarray]]:
        """The newest frame of a reader thread, older ones dropped (module doc)."""
        slot: deque = deque()
        ready = threading.Condition()
        done = threading.Event()
        error: list[BaseException] = []
        pace = self.kind == "file"  # a file played live runs at its own frame rate

        def reader() -> None:
            t = 0
            try:
                cap = self.open()
                period = 1.0 / (self.fps or 25.0)
                start = time.perf_counter()
                while not self._stop.is_set():
                    ok, bgr = cap.read()
                    if not ok:
                        cap.release()
                        if self.kind == "file":
                            break
                        cap = self._reconnect()
                        continue
                    if pace:
                        wait = start + t * period - time.perf_counter()
                        if wait > 0:
                            time.sleep(wait)
                    with ready:
                        if len(slot) >= LIVE_BUFFER:
                            slot.popleft()
                            self.dropped += 1
                        slot.append((t, bgr))
                        ready.notify()
                    t += 1
                cap.release()
            except BaseException as exc:  # handed to the consumer
                error.append(exc)
            finally:
                done.set()
                with ready:
                    ready.notify()

        thread = threading.Thread(target=reader, daemon=True, name=f"read {self.name}")
        thread.start()
        got = 0
        try:
            while True:
                with ready:
                    while not slot and not done.is_set():
                        if not ready.wait(timeout=STALL_S) and not slot and not done.is_set():
                            raise InputError(f"{self.describe()}: no frame for {STALL_S:g} s (stalled)")
                    item = slot.popleft() if slot else None
                    self.waiting = len(slot)
                if item is None:
                    break
                got += 1
                yield item[0], rgb_from_bgr(item[1])
        finally:
            self._stop.set()
            thread.join(timeout=5.0)
        if error:
            raise error[0]
        if got == 0:
            raise InputError(f"{self.describe()}: no frame could be read")

    def _reconnect(self) -> cv2.VideoCapture:
        for delay in RECONNECT_DELAYS_S:
            if self._stop.wait(delay):
                raise InputError(f"{self.describe()}: stopped")
            self.reconnects += 1
            try:
                return self.open()
            except InputError:
                continue
        raise InputError(
            f"{self.describe()}: the stream stopped and did not come back after {len(RECONNECT_DELAYS_S)} reconnects "
            f"over {sum(RECONNECT_DELAYS_S):g} s"
        )


def expand(specs: list[str], *, live: bool | None = None) -> list[Source]:
    """Sources of the command line's SOURCE arguments (module doc). ``live``: read files as
    live sources too (True), never (False), or only cameras and streams (None)."""
    out: list[Source] = []
    for spec in specs:
        if spec.isdigit():
            out.append(Source(f"camera{spec}", "camera", int(spec), live=True if live is None else live))
            continue
        if "://" in spec:
            name = "".join(c if c.isalnum() else "_" for c in spec.split("://", 1)[1]).strip("_")[:60] or "stream"
            out.append(Source(name, "stream", spec, live=True if live is None else live))
            continue
        path = Path(spec)
        if path.is_file():
            if path.suffix.lower() not in VIDEO_EXTENSIONS:
                raise InputError(f"{path}: not a video file ({', '.join(VIDEO_EXTENSIONS)})")
            out.append(Source(path.stem, "file", path, live=bool(live)))
        elif path.is_dir():
            out.extend(_folder(path, bool(live)))
        else:
            raise InputError(f"{spec}: no such file or folder, and not a camera index or stream URL")
    names = [s.name for s in out]
    if len(set(names)) < len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise InputError(f"two sources are both named {dup!r}: their outputs would overwrite each other")
    return out


def _folder(path: Path, live: bool) -> list[Source]:
    images = sorted(f for f in path.iterdir() if f.is_file() and f.suffix.lower() in FRAME_EXTENSIONS)
    if images:
        jpg = [f for f in images if f.suffix.lower() == ".jpg"]
        return [Source(path.name, "frames", jpg or images)]
    videos = sorted(f for f in path.iterdir() if f.is_file() and f.suffix.lower() in VIDEO_EXTENSIONS)
    if videos:
        return [Source(f.stem, "file", f, live=live) for f in videos]
    if any(p.is_dir() for p in path.iterdir()):
        return [Source(v.name, "frames", v.frames) for v in list_videos(path)]
    raise InputError(f"{path}: no frame images, video files or frame folders in it")
