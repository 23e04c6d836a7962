"""The command line's fixed choices stay in step with what they stand for."""

import logging

from services.api import Role
from services.cli import LogLevel, TokenRole


def test_token_roles_are_the_api_roles() -> None:
    """`coreline token create --role` offers exactly the API's roles."""
    assert [role.value for role in TokenRole] == [role.value for role in Role]


def test_every_log_level_names_a_logging_level() -> None:
    """Every `--log-level` choice is a level the logging module knows."""
    levels = logging.getLevelNamesMapping()
    assert all(level.upper() in levels for level in LogLevel)
