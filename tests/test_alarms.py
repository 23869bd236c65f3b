"""Causal smoothing, alarm events and thresholds set by a false-alarm rate."""

import numpy as np
import pytest

from memfuse.alarms import (
    CausalSmoother,
    EventTracker,
    alarm_events,
    causal_kernel,
    causal_smooth,
    count_events,
    threshold_for_rate,
)


def test_causal_smoothing_uses_no_later_frame_and_streams_as_in_batch():
    rng = np.random.default_rng(0)
    x = rng.normal(size=60)
    ends = np.array([25, 60])
    batch = causal_smooth(x, ends, 3.0)
    y = x.copy()
    y[40:] += 100  # a change after frame 39 moves no score before it
    assert np.allclose(causal_smooth(y, ends, 3.0)[:40], batch[:40])
    streamed = []
    for v, (a, b) in enumerate(((0, 25), (25, 60))):
        s = CausalSmoother(3.0)
        streamed += [s(val) for val in x[a:b]]
    assert np.allclose(streamed, batch)
    assert causal_kernel(3.0).sum() == pytest.approx(1.0)
    assert batch[25] == pytest.approx(x[25])  # a video's first frame has only itself


def test_events_are_runs_with_small_gaps_merged_and_the_tracker_agrees():
    s = np.zeros(30)
    s[[3, 4, 5, 7, 20, 21]] = [2, 5, 2, 2, 3, 1]
    assert [(e.start, e.end, e.peak) for e in alarm_events(s, 1.0)] == [(3, 5, 4), (7, 7, 7), (20, 21, 20)]
    merged = alarm_events(s, 1.0, merge_gap=1)
    assert [(e.start, e.end) for e in merged] == [(3, 7), (20, 21)]
    tracker, seen = EventTracker(1.0, merge_gap=1), []
    for t, v in enumerate(s):
        e = tracker(t, v)
        if e:
            seen.append((e.start, e.end, e.peak))
    assert tracker.close() is None  # the last event ended two frames after frame 21
    s[29] = 4
    tracker(29, 4)
    assert (tracker.close().start, tracker.open) == (29, None)
    assert seen == [(e.start, e.end, e.peak) for e in merged]


def test_threshold_meets_the_rate_where_the_footage_can_show_it():
    rng = np.random.default_rng(1)
    scores = causal_smooth(rng.normal(size=36000), np.array([36000]), 3.0)  # one hour at 10 frames/s
    t = threshold_for_rate(scores, np.array([36000]), fps=10, per_hour=20)
    assert not t.extrapolated
    assert count_events(scores, np.array([36000]), t.value) <= 20
    assert count_events(scores, np.array([36000]), t.value * 0.9) > 20
    lower = threshold_for_rate(scores, np.array([36000]), fps=10, per_hour=200)
    assert lower.value < t.value


def test_a_rate_below_one_event_of_the_footage_is_extrapolated_past_every_score():
    rng = np.random.default_rng(2)
    scores = causal_smooth(rng.exponential(size=3000), np.array([3000]), 3.0)  # 5 minutes at 10 frames/s
    one = threshold_for_rate(scores, np.array([3000]), fps=10, per_hour=1)
    tenth = threshold_for_rate(scores, np.array([3000]), fps=10, per_hour=0.1)
    assert one.extrapolated and one.value > scores.max() and one.events_at_threshold == 0
    assert tenth.value > one.value
    with pytest.raises(ValueError):
        threshold_for_rate(scores, np.array([3000]), fps=10, per_hour=0)
