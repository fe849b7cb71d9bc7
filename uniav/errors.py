"""Exceptions with messages that name the file, the video and the field at fault."""

from __future__ import annotations

from pathlib import Path


class UniAVError(Exception):
    """Base class of every error this package raises on purpose (the CLI prints it without a trace)."""


class ConfigError(UniAVError):
    """A configuration value is unknown, missing or of the wrong type; the message names its key path."""


class InputError(UniAVError):
    """Bad input data: annotations, features, predictions, prompts, media or checkpoints.

    Args:
        message: what is wrong.
        file: the file at fault, if any.
        video: the video (or clip) id at fault, if any.
        field: the field at fault (e.g. ``annotations[2].segment``), if any.
    """

    def __init__(self, message: str, *, file: str | Path | None = None, video: str | None = None,
                 field: str | None = None):
        self.file = None if file is None else str(file)
        self.video = video
        self.field = field
        where = []
        if self.file is not None:
            where.append(f"file {self.file}")
        if video is not None:
            where.append(f"video {video!r}")
        if field is not None:
            where.append(f"field {field!r}")
        super().__init__(f"{'; '.join(where)}: {message}" if where else message)
        self.message = message


class ChecksumError(InputError):
    """A downloaded file does not have the SHA-256 the manifest promises."""
