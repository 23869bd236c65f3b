"""Stage 0: AI-VAD-format per-object features from raw frames and object boxes.

- :mod:`.frames`: frame listing/reading, box checking and repair, crop geometry
- :mod:`.velocity`: optical flow and AI-VAD's binned box velocity
- :mod:`.appearance`: 512-d appearance backbones (HOG+geometry default, pixels, CLIP)
- :mod:`.clip_vit`: CLIP ViT-B/16 image encoder in plain torch
"""
