"""What training, evaluation and prediction read at run time: annotation files
(:mod:`~uniav.data.annotations`), feature stores (:mod:`~uniav.data.features`) and the one
dataset class with its batching (:mod:`~uniav.data.dataset`).

Offline preparation (synthesis, downloads, extraction, prompts) lives in :mod:`uniav.prepare`.
"""
