"""UniAV: unified audio-visual localization of actions, sound events and audio-visual events.

The package is organised by role (``docs/architecture.md`` is the map):

* :mod:`uniav.config`       - the strict, typed view of ``params.yaml`` (sections, overlays, relations)
* :mod:`uniav.grid`         - the feature time grid (seconds <-> steps)
* :mod:`uniav.prepare`      - offline preparation: synthetic benchmark, downloads, extraction, prompts
* :mod:`uniav.data`         - what runs read: annotations, feature stores, the dataset, batches
* :mod:`uniav.model`        - the network (layers, backbone, heads, assignment, losses)
* :mod:`uniav.engine`       - training, evaluation, own-video inference, checkpoint import
* :mod:`uniav.postprocess`  - decoding of raw outputs to segments, 1-D NMS
* :mod:`uniav.evaluation`   - detection mAP (ActivityNet protocol) and SED extras
* :mod:`uniav.report`       - tables and figures from the pipeline's outputs
* :mod:`uniav.pipeline`     - workflow support: effective config, job plan, GPU slots
* :mod:`uniav.tracking`     - MLflow

Task identity is always a task's name (``tal``, ``sed``, ``avel``), never a position.
"""

__version__ = "0.1.0"
