"""memfuse: self-supervised memory-guided attention feature fusion for video anomaly detection.

The shared library behind the stage scripts at the project's top level: feature I/O
(:mod:`memfuse.data`, :mod:`memfuse.io`), models and losses (:mod:`memfuse.models`),
K-Means (:mod:`memfuse.kmeans`), pseudo features (:mod:`memfuse.pseudo`), padding and
masks (:mod:`memfuse.padding`) and frame-level metrics (:mod:`memfuse.metrics`).
"""
