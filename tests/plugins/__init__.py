"""Plugins the self-tests load into an invariants subprocess (``-p plugins.NAME``, with tests/ on PYTHONPATH)."""

from antenna_invariants import rules


def before_grouped_checks(hook) -> None:
    """Call ``hook(entry, scopes)`` before every grouped check (``rules.check_projects``), which then runs
    unchanged unless the hook raises."""
    real = rules.check_projects

    def check_projects(entry, scopes, *args, **kwargs):
        hook(entry, scopes)
        return real(entry, scopes, *args, **kwargs)

    rules.check_projects = check_projects
