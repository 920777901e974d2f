"""Errors that are the user's to fix, re-exported from the lower layer that defines them.

``tfrecords_tools`` (conversion) and ``tsn_keras`` (training and everything above) raise the
same three classes, so the CLI catches one ``TSNError`` for both. They are defined once, in
``tfrecords_tools.errors``, because nothing in that package may import ``tsn_keras``.
"""

import re

from tfrecords_tools.errors import ConfigError, DataError, TSNError, environment_error_message, is_disk_full

__all__ = ["ConfigError", "DataError", "TSNError", "environment_error_message", "input_error_message",
           "is_disk_full"]

# The input pipeline reports an unreadable clip from inside the graph (``data/failures.py``), so
# it reaches the caller as a TensorFlow assertion; its text is ours and names shard and video.
_CORRUPT = re.compile(r"(corrupt data in shard .*?)\]?\s*(?:\n|\[\[|$)")


def input_error_message(err: BaseException) -> str | None:
    """The pipeline's own message in a TensorFlow error about corrupt input data, else ``None``."""
    match = _CORRUPT.search(str(err))
    return match.group(1).rstrip("]") if match else None
