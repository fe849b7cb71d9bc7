"""Training, evaluation and own-video inference."""
