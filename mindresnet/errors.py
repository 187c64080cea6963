"""The one family of user errors: every mistake a user can make raises a :class:`MindresnetError`.

Each message names the file or flag at fault and says what to do. The command-line layer
(:mod:`mindresnet.cli`) prints it as ``error: ...`` and exits non-zero without a traceback; any
other exception is a bug and keeps its traceback. The subclasses also derive from the built-in
type they were before (``ValueError``/``RuntimeError``), so existing ``except`` clauses still match.
"""


class MindresnetError(Exception):
    """A user error whose message names the bad input and the fix."""


class ConfigError(MindresnetError, ValueError):
    """A configuration value or file is invalid; the message names the flag or file."""


class CheckpointError(MindresnetError, ValueError):
    """A checkpoint file is missing, empty, corrupt, or does not fit the model."""


class DataError(MindresnetError, ValueError):
    """A dataset is missing, malformed or incomplete; the message names the file and the fix."""


class DownloadError(MindresnetError, RuntimeError):
    """A file could not be downloaded or failed its checks."""


class DeviceError(MindresnetError, RuntimeError):
    """The requested device is unknown or its MindSpore backend is not available."""


class ExportError(MindresnetError, ValueError):
    """The format is unknown or the backend cannot produce it; the message says what to use instead."""


class ImageError(MindresnetError, ValueError):
    """An input image is missing or cannot be decoded; the message names the file."""


class TrainingDiverged(MindresnetError, RuntimeError):
    """The loss became NaN or infinite."""


class WriteError(MindresnetError, OSError):
    """An output file could not be written (full disk, permissions); the previous file is unchanged."""
