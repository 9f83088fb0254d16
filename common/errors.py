"""Exception types shared by all subsystems.

Every error raised for bad user input names the file (when there is one) and the
problem, so the message can be shown as-is by the CLI and the GUI.

The CLI maps them to exit codes (`exit_code_for`): `UsageError` → 2 (like click's own
usage errors), every other `RawsigmaError` → 1, `Cancelled` → 130.
"""

from __future__ import annotations


class RawsigmaError(Exception):
    """Base class of all rawsigma errors meant to be shown to the user."""


class UsageError(RawsigmaError, ValueError):
    """Bad command-line usage: a missing or contradictory option, a value out of range.

    The CLI exits with status 2 for it (the status of click's own usage errors).
    """


class InputFileError(RawsigmaError, ValueError):
    """An input file is missing, truncated, foreign or has the wrong content."""


class DamagedHDF5Error(InputFileError):
    """libhdf5 crashed or hung on an HDF5 file (`rawsigma.h5probe`): damaged structure."""


class ProfileError(InputFileError):
    """A camera profile file is invalid (schema, shapes, dtypes)."""


class ImageMismatchError(RawsigmaError, ValueError):
    """An image does not match a profile (shape, binning, bit depth, dtype)."""


class OutputExistsError(RawsigmaError, FileExistsError):
    """An output file exists and overwriting was not requested (``--force``)."""


class OutputError(RawsigmaError):
    """An output cannot be written: no permission, no space, a file in the way."""


class OutputLockedError(OutputError):
    """Another process (named by its PID) is writing the same output."""


class AcquisitionError(RawsigmaError, RuntimeError):
    """The camera or the light source failed during an acquisition."""


class Cancelled(RawsigmaError):
    """Long work was cancelled by the user; partial results were kept."""


def exit_code_for(exc: BaseException) -> int:
    """Exit status of the ``rawsigma`` command for an exception.

    0 success, 1 runtime or input error, 2 usage error, 130 interrupted (Ctrl-C).
    """
    if isinstance(exc, (KeyboardInterrupt, Cancelled)):
        return 130
    if isinstance(exc, UsageError):
        return 2
    return 1
