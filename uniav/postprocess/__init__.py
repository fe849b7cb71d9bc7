"""Post-processing of raw model outputs: decoding to segments, 1-D NMS, grid <-> seconds.

Public API:

* :func:`decode_video` - per-level logits/offsets/masks -> candidate segments (grid units);
* :func:`batched_nms` - Gaussian soft-NMS / hard NMS / none, per class or class-agnostic;
* :func:`postprocess_video` - decode -> NMS -> seconds of one video;
* :func:`decode_batch`, :func:`postprocess_batch` - the same for a whole batch (what inference
  runs on CUDA: decoding where the outputs are, in one pass per level; the same results).
"""

from uniav.postprocess.decode import decode_batch, decode_video, postprocess_batch, postprocess_video
from uniav.postprocess.nms import NMS_METHODS, batched_nms, segment_iou

__all__ = ["NMS_METHODS", "batched_nms", "decode_batch", "decode_video", "postprocess_batch",
           "postprocess_video", "segment_iou"]
