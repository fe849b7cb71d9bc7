"""Post-processing of raw model outputs: decoding to segments, 1-D NMS, grid <-> seconds.

Public API:

* :func:`decode_video` - per-level logits/offsets/masks -> candidate segments (grid units);
* :func:`batched_nms` - Gaussian soft-NMS / hard NMS / none, per class or class-agnostic;
* :func:`grid_to_seconds`, :func:`seconds_to_grid` - the time-grid conversion;
* :func:`postprocess_video` - decode -> NMS -> seconds, what inference runs per video.
"""

from uniav.postprocess.decode import (decode_video, grid_to_seconds, postprocess_video,
                                      seconds_to_grid)
from uniav.postprocess.nms import NMS_METHODS, batched_nms, segment_iou

__all__ = ["NMS_METHODS", "batched_nms", "decode_video", "grid_to_seconds", "postprocess_video",
           "seconds_to_grid", "segment_iou"]
