"""Evaluation: detection mAP (ActivityNet protocol), SED extras, and ``uniav score``.

Public API:

* :class:`Predictions`, :func:`load_predictions` - validated detections (ActivityNet results);
* :func:`evaluate_detection` -> :class:`DetectionResult` - detection mAP per tIoU threshold;
* :func:`uniav.evaluation.sed.sed_extras` - PSDS1/PSDS2 and collar-based F1 for sound events
  (imported from its module: it pulls in pandas and sed_scores_eval).
"""

from uniav.evaluation.detection import (ACTIVITYNET_THRESHOLDS, DetectionResult,
                                        evaluate_detection, resolve_ground_truth,
                                        validate_thresholds)
from uniav.evaluation.predictions import Predictions
from uniav.evaluation.results_file import load_predictions

__all__ = ["ACTIVITYNET_THRESHOLDS", "DetectionResult", "Predictions", "evaluate_detection",
           "load_predictions", "resolve_ground_truth", "validate_thresholds"]
