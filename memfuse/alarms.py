"""Causal frame scores, alarm events and alarm thresholds set by a false-alarm rate.

A detector on a stream cannot smooth with a symmetric window: frame t's score may use only
frames up to t. :func:`causal_kernel` is the past half of the evaluation's Gaussian (same
sigma), renormalised; :func:`causal_smooth` applies it to whole videos, :class:`CausalSmoother`
one frame at a time (the two agree to rounding, tests/test_alarms.py).

An alarm is a frame whose causal score reaches the threshold; an *event* is a run of alarm
frames, runs less than ``merge_gap`` frames apart counted as one (a person whose score
flickers around the threshold raises one alarm, not ten).

The threshold comes from normal footage only (:func:`threshold_for_rate`): the scores of
train frames whose memorised terms came from models that never saw them (calibrate.py).
False alarms per hour at a threshold u are the events of that footage per hour. Ten minutes
of footage cannot show a rate of one an hour directly, so above the footage's
:data:`POT_QUANTILE` score the rate is extrapolated: event peaks above u have an
exponential excess (peaks over threshold), rate(t) = rate(u) exp(-(t - u) / scale), and t
is solved for the rate asked for.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from .metrics import video_slices

KERNEL_SIGMAS = 3.0  # the causal window reaches back this many sigmas
POT_QUANTILE = 0.9  # frame-score quantile above which event peaks set the tail
MIN_TAIL_EVENTS = 3  # fewer events above it: the threshold is the largest score seen, plus one tail scale


def causal_kernel(sigma: float) -> np.ndarray:
    """Weights (K + 1,) of frames t, t-1, ..., t-K: a half Gaussian, summing to 1. sigma <= 0: [1]."""
    if sigma <= 0:
        return np.ones(1)
    k = np.arange(int(math.ceil(KERNEL_SIGMAS * sigma)) + 1, dtype=np.float64)
    w = np.exp(-0.5 * (k / sigma) ** 2)
    return w / w.sum()


def causal_smooth(scores: np.ndarray, ends: np.ndarray, sigma: float) -> np.ndarray:
    """Causally smoothed scores (F,) of videos ending at ``ends`` (V,): each frame the
    :func:`causal_kernel` average of itself and the frames before it in its video (the
    first frames of a video renormalise over the frames they have)."""
    scores = np.asarray(scores, dtype=np.float64)
    w = causal_kernel(sigma)
    out = np.empty_like(scores)
    for s in video_slices(np.asarray(ends)):
        x = scores[s]
        num = np.convolve(x, w)[: len(x)]
        den = np.convolve(np.ones(len(x)), w)[: len(x)]
        out[s] = num / den
    return out


class CausalSmoother:
    """:func:`causal_smooth` one frame at a time: ``smoother(raw) -> smoothed``."""

    def __init__(self, sigma: float):
        self.w = causal_kernel(sigma)
        self.past: deque[float] = deque(maxlen=len(self.w))

    def __call__(self, raw: float) -> float:
        self.past.appendleft(float(raw))
        w = self.w[: len(self.past)]
        return float(np.dot(w, np.fromiter(self.past, float, len(self.past))) / w.sum())

    def reset(self) -> None:
        self.past.clear()


@dataclass
class Event:
    """One alarm event: frames [start, end] (inclusive) of a video, and its peak frame."""

    start: int
    end: int
    peak: int


def alarm_events(scores: np.ndarray, threshold: float, merge_gap: int = 0) -> list[Event]:
    """The events of one video's scores (T,): runs of frames >= ``threshold``, runs fewer
    than ``merge_gap`` frames apart merged."""
    on = np.flatnonzero(np.asarray(scores) >= threshold)
    if not len(on):
        return []
    breaks = np.flatnonzero(np.diff(on) > merge_gap + 1)
    starts, stops = np.r_[on[0], on[breaks + 1]], np.r_[on[breaks], on[-1]]
    return [Event(int(a), int(b), int(a + np.argmax(scores[a : b + 1]))) for a, b in zip(starts, stops)]


class EventTracker:
    """:func:`alarm_events` one frame at a time: ``tracker(t, score)`` returns the event
    that ended before frame t (None while none has), ``tracker.close()`` the open one."""

    def __init__(self, threshold: float, merge_gap: int = 0):
        self.threshold, self.merge_gap = threshold, merge_gap
        self.open: Event | None = None
        self._peak = -math.inf

    def __call__(self, t: int, score: float) -> Event | None:
        ended = None
        if self.open is not None and t - self.open.end > self.merge_gap + 1:
            ended, self.open = self.open, None
        if score >= self.threshold:
            if self.open is None:
                self.open, self._peak = Event(t, t, t), -math.inf
            self.open.end = t
            if score > self._peak:
                self.open.peak, self._peak = t, score
        return ended

    def close(self) -> Event | None:
        ended, self.open = self.open, None
        return ended


def count_events(scores: np.ndarray, ends: np.ndarray, threshold: float, merge_gap: int = 0) -> int:
    """Events over all videos of ``scores`` (F,)."""
    return sum(len(alarm_events(scores[s], threshold, merge_gap)) for s in video_slices(np.asarray(ends)))


@dataclass
class Threshold:
    """An alarm threshold and how it was set."""

    value: float
    false_alarms_per_hour: float  # the rate asked for
    footage_hours: float  # normal footage it was estimated on
    events_at_threshold: int  # events of that footage at the threshold (0 when extrapolated past them)
    base: float  # the POT_QUANTILE score, where the tail starts
    base_rate: float  # events per hour above base
    scale: float  # the tail's mean peak excess over base
    extrapolated: bool  # the rate asked for is below one event in the footage


def threshold_for_rate(
    scores: np.ndarray, ends: np.ndarray, *, fps: float, per_hour: float, merge_gap: int = 0
) -> Threshold:
    """The lowest threshold whose false alarms per hour on normal footage ``scores`` (F,,
    causal, videos ending at ``ends``) are at most ``per_hour`` (module doc): counted where
    the footage holds that many events, else extrapolated from the tail of its event peaks."""
    scores = np.asarray(scores, dtype=np.float64)
    if per_hour <= 0 or fps <= 0:
        raise ValueError(f"the false-alarm rate and fps must be > 0, got {per_hour} and {fps}")
    hours = len(scores) / fps / 3600.0
    base = float(np.quantile(scores, POT_QUANTILE))
    peaks = np.array(
        [scores[s][e.peak] for s in video_slices(np.asarray(ends)) for e in alarm_events(scores[s], base, merge_gap)]
    )
    scale = float((peaks - base).mean()) if len(peaks) else 0.0
    if scale <= 0:
        scale = float(scores.std()) or 1.0
    allowed = per_hour * hours
    if allowed >= 1:  # the footage shows that many events: count them
        # the count changes where the threshold passes an event's peak: bisect the sorted peaks
        # for the lowest that allows the rate (the count falls, but not strictly, as it rises)
        candidates = np.unique(peaks)
        lo, hi = 0, len(candidates) - 1
        if len(candidates) and count_events(scores, ends, candidates[hi], merge_gap) <= allowed:
            while lo < hi:
                mid = (lo + hi) // 2
                if count_events(scores, ends, candidates[mid], merge_gap) <= allowed:
                    hi = mid
                else:
                    lo = mid + 1
            n = count_events(scores, ends, candidates[lo], merge_gap)
            return Threshold(float(candidates[lo]), per_hour, hours, n, base, len(peaks) / hours, scale, False)
    if len(peaks) >= MIN_TAIL_EVENTS:
        value = base + scale * math.log(max(len(peaks) / allowed, 1.0))
    else:
        value = float(scores.max()) + scale
    if allowed < 1:  # not one event of the footage may reach it
        value = max(value, float(np.nextafter(scores.max(), np.inf)))
    return Threshold(
        float(value),
        per_hour,
        hours,
        count_events(scores, ends, value, merge_gap),
        base,
        len(peaks) / hours,
        scale,
        True,
    )
