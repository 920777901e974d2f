"""Errors that are the user's to fix, re-exported from the lower layer that defines them.

``tfrecords_tools`` (conversion) and ``tsn_keras`` (training and everything above) raise the
same three classes, so the CLI catches one ``TSNError`` for both. They are defined once, in
``tfrecords_tools.errors``, because nothing in that package may import ``tsn_keras``.
"""

from tfrecords_tools.errors import ConfigError, DataError, TSNError, environment_error_message, is_disk_full

__all__ = ["ConfigError", "DataError", "TSNError", "environment_error_message", "is_disk_full"]
