"""Tests of uniav.postprocess."""
