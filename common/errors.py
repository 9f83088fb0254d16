"""Exception types shared by all subsystems.

Every error raised for bad user input names the file (when there is one) and the
problem, so the message can be shown as-is by the CLI and the GUI.
"""

from __future__ import annotations


class RawsigmaError(Exception):
    """Base class of all rawsigma errors meant to be shown to the user."""


class InputFileError(RawsigmaError, ValueError):
    """An input file is missing, truncated, foreign or has the wrong content."""


class ProfileError(InputFileError):
    """A camera profile file is invalid (schema, shapes, dtypes)."""


class ImageMismatchError(RawsigmaError, ValueError):
    """An image does not match a profile (shape, binning, bit depth, dtype)."""


class OutputExistsError(RawsigmaError, FileExistsError):
    """An output file exists and overwriting was not requested (``--force``)."""


class AcquisitionError(RawsigmaError, RuntimeError):
    """The camera or the light source failed during an acquisition."""


class Cancelled(RawsigmaError):
    """Long work was cancelled by the user; partial results were kept."""
