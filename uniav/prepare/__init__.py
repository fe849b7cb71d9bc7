"""Offline preparation: everything that turns raw material into what training reads.

The synthetic benchmark (:mod:`~uniav.prepare.synthetic`), the paper benchmark's downloads
(:mod:`~uniav.prepare.download`), media decoding (:mod:`~uniav.prepare.media`), feature encoders
and extraction (:mod:`~uniav.prepare.encoders`, :mod:`~uniav.prepare.extract`), class-prompt
embeddings (:mod:`~uniav.prepare.prompts`) and the linear probe of extracted features
(:mod:`~uniav.prepare.probe`).  Nothing here runs during training; what training reads at run
time lives in :mod:`uniav.data`.  Submodules are imported on demand so ``uniav`` sub-commands
start quickly.
"""
