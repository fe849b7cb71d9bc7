"""Report output: the paper tables (:mod:`~uniav.report.tables`) and figures
(:mod:`~uniav.report.figures`), built from the metrics, histories and predictions the pipeline
wrote - never from a model.  :mod:`~uniav.report.cli` holds ``uniav tables`` and ``uniav figures``.
"""
