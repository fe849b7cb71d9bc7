#!/usr/bin/env bash
# Run by Snakemake inside the freshly created conda environment, from the project root.
set -euo pipefail
python -m pip install --disable-pip-version-check -r requirements.lock
python -m pip install --disable-pip-version-check --no-deps --no-build-isolation -e .
