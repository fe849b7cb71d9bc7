"""UniAV: unified audio-visual localization of actions, sound events and audio-visual events.

The package is organised by concern (see ``docs/architecture.md``):

* :mod:`uniav.config`       - the strict, typed view of ``params.yaml``
* :mod:`uniav.data`         - synthetic benchmark, downloads, feature extraction, prompts, the dataset
* :mod:`uniav.model`        - the network (layers, backbone, heads, assignment, losses)
* :mod:`uniav.engine`       - training, evaluation and own-video inference
* :mod:`uniav.postprocess`  - decoding of raw outputs to segments, 1-D NMS
* :mod:`uniav.evaluation`   - detection mAP (ActivityNet protocol) and SED extras
* :mod:`uniav.pipeline`     - tables, figures and experiment tracking used by the Snakemake rules
"""

__version__ = "0.1.0"

#: Task names, in the order the paper reports them.  Task identity is always this name.
TASK_NAMES = ("tal", "sed", "avel")
