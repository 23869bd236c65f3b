"""Stage 0: AI-VAD-format per-object features from raw frames and object boxes.

- :mod:`.pipeline`: the whole stage: :class:`ExtractSettings` and :func:`extract_dataset`
  (``extract_features.py`` is its command line)
- :mod:`.frames`: frame listing/reading, box checking and repair, crop geometry
- :mod:`.motion`: boxes of what moves, for a dataset without a boxes file
- :mod:`.velocity`: optical flow and AI-VAD's binned box velocity
- :mod:`.appearance`: 512-d appearance backbones (HOG+geometry default, pixels, CLIP)
- :mod:`.clip_vit`: CLIP ViT-B/16 image encoder in plain torch
- :mod:`.pose`: BlazePose's landmark model on object boxes

Importing the package, or :mod:`.pipeline`, does not import OpenCV; the other modules do.
"""

from .pipeline import ExtractSettings, extract_dataset

__all__ = ["ExtractSettings", "extract_dataset"]
