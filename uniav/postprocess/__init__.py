"""Post-processing of raw model outputs: decoding to segments, 1-D NMS, grid <-> seconds.

Public API:

* :func:`decode_video` - per-level logits/offsets/masks -> candidate segments (grid units);
* :func:`batched_nms` - Gaussian soft-NMS / hard NMS / none, per class or class-agnostic;
* :func:`postprocess_video` - decode -> NMS -> seconds, what inference runs per video.
"""

from uniav.postprocess.decode import decode_video, postprocess_video
from uniav.postprocess.nms import NMS_METHODS, batched_nms, segment_iou

__all__ = ["NMS_METHODS", "batched_nms", "decode_video", "postprocess_video", "segment_iou"]
