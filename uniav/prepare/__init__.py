"""Offline preparation of data sets (e.g. a miniature replica of the paper's released files)."""
