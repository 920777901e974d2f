"""Errors that are the user's to fix: the CLI prints them as one message and exits with code 2."""

import errno


class TSNError(Exception):
    """Base class for errors caused by input (configuration, data, files), not by a bug."""


class ConfigError(TSNError, ValueError):
    """A configuration key or value is invalid; the message names the key and what is allowed."""


class DataError(TSNError):
    """Input data is missing, unreadable or inconsistent (videos, shards, score files)."""


# File-system refusals that are the user's environment, not a bug: the CLI reports them in
# one line (exit 2) instead of a traceback. ENOSPC/EDQUOT: a full disk or quota.
_ENVIRONMENT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM,
                                 errno.ENOTDIR, errno.EEXIST, errno.EISDIR})
_NO_SPACE_TEXT = ("No space left on device", "errno = 28", "Disk quota exceeded")


def is_disk_full(err: BaseException) -> bool:
    """``err`` reports a full disk, as an ``OSError`` or as text (h5py and TensorFlow wrap ``ENOSPC``)."""
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return any(text in str(err) for text in _NO_SPACE_TEXT)


def environment_error_message(err: BaseException) -> str | None:
    """One line for a file-system refusal (full disk, read-only, not a folder, ...), else ``None``."""
    if is_disk_full(err):
        where = f" writing {err.filename}" if getattr(err, "filename", None) else ""
        return (f"no space left on the device{where}; nothing written was left half-done: free space and run the "
                "same command again (a conversion or training resumes)")
    if isinstance(err, OSError) and err.errno in _ENVIRONMENT_ERRNOS:
        what = f"{err.filename}: " if err.filename else ""
        hint = {errno.EROFS: " (a read-only file system)", errno.ENOTDIR: " (a file where a folder is needed)",
                errno.EEXIST: " (a file is in the way)"}.get(err.errno, "")
        return f"{what}{err.strerror}{hint}"
    return None
