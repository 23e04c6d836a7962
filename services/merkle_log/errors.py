"""The log's one exception family."""


class MerkleLogError(Exception):
    """Base of the log's failures."""


class LogKeyError(MerkleLogError):
    """The log key file is missing, unreadable or unsafe."""


class NotInLogError(MerkleLogError):
    """What was asked for (an event, a size, a checkpoint) is not in the log."""
