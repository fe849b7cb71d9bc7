"""Tests of uniav.evaluation."""
