"""The errors the engine reports to the user: each is one line and a documented exit code, never a traceback."""

from __future__ import annotations


class ConfigError(Exception):
    """Bad input or configuration: reported as one line, exit code 4."""


class RepairRefused(Exception):
    """A repair that would change more of a table than the user allows (``--force`` overrides)."""


class RuleDefinitionError(TypeError):
    """A rule declared wrongly (its signature, its table, its options): raised by ``@rule`` when the rule's
    module is imported, naming the rule and what to change."""
