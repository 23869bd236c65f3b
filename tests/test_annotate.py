"""memfuse.annotate: the colours, boxes, bar and ground-truth border of annotated frames."""

import numpy as np

from memfuse.annotate import BAR_PX, RED_AT, boxes_to_draw, colour, draw


def test_colour_runs_from_green_to_red_and_white_without_a_score():
    assert colour(-1.0) == colour(0.0) == (0, 255, 0)
    assert colour(RED_AT) == colour(10 * RED_AT) == (0, 0, 255)
    assert colour(RED_AT / 2) == (0, 255, 255)  # yellow (BGR)
    assert colour(float("nan")) == (255, 255, 255)


def test_draw_boxes_bar_and_border():
    frame = np.full((40, 60, 3), 100, np.uint8)
    boxes = np.array([[10, 5, 20, 25]], np.float32)
    img = draw(frame, boxes, np.array([RED_AT]), level=0.5, anomalous=True)
    assert tuple(img[5, 15]) == (0, 0, 255)  # the top edge of the red box (BGR)
    assert tuple(img[15, 15]) == (100, 100, 100)  # inside the box: the frame
    bar = img[40 - BAR_PX + 1, :, :]
    assert tuple(bar[5]) != (40, 40, 40) and tuple(bar[50]) == (40, 40, 40)  # half full
    assert tuple(img[1, 30]) == (0, 0, 255)  # the border of an anomalous frame
    calm = draw(frame, boxes[:1], np.array([0.0]), level=0.0, anomalous=False)
    assert tuple(calm[5, 15]) == (0, 255, 0) and tuple(calm[1, 30]) == (100, 100, 100)


def test_a_frame_without_detections_draws_no_box_and_a_frame_filling_box_is_drawn():
    assert boxes_to_draw(np.zeros((0, 4)), 60, 40).shape == (0, 4)  # its whole-frame entry is not an object
    whole = boxes_to_draw(np.array([[0, 0, 60, 40]], np.float32), 60, 40)  # a real detection as large as the frame
    assert whole.shape == (1, 4)
    frame = np.full((40, 60, 3), 100, np.uint8)
    assert tuple(draw(frame, whole, np.array([RED_AT]), level=1.0, anomalous=False)[10, 0]) == (0, 0, 255)
