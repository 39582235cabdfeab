"""Errors the user can act on: the CLI prints them as one line, without a traceback."""

from __future__ import annotations


class AttnGANError(Exception):
    """Base class of every error caused by bad input rather than a bug."""


class ConfigError(AttnGANError, ValueError):
    """An unknown configuration key, a value of the wrong type, or an unknown preset."""


class DataError(AttnGANError):
    """A missing, corrupt or malformed data file, or a sample that cannot be used."""


class VocabularyError(AttnGANError, ValueError):
    """An empty caption, a caption with no known word, or a malformed vocabulary file."""


class ModelError(AttnGANError):
    """A missing, truncated or wrong-kind model or checkpoint, or weights that do not fit."""


class TrainingError(AttnGANError):
    """Training cannot go on: a NaN or infinite loss, or a run folder that cannot be resumed."""


class OutputError(AttnGANError):
    """An output path that cannot be written: under a regular file, read-only, or a folder where
    a file is wanted."""
