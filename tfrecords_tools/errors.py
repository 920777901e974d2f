"""Errors that are the user's to fix: the CLI prints them as one message and exits with code 2."""


class TSNError(Exception):
    """Base class for errors caused by input (configuration, data, files), not by a bug."""


class ConfigError(TSNError, ValueError):
    """A configuration key or value is invalid; the message names the key and what is allowed."""


class DataError(TSNError):
    """Input data is missing, unreadable or inconsistent (videos, shards, score files)."""
