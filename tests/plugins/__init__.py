"""Plugins the self-tests load into an invariants subprocess (``-p plugins.NAME``, with tests/ on PYTHONPATH)."""

from antenna_invariants import check


def before_grouped_checks(hook) -> None:
    """Call ``hook(entry, scopes)`` before every grouped check (``check.check_grouped``), which then runs
    unchanged unless the hook raises."""
    real = check.check_grouped

    def check_grouped(entry, scopes, *args, **kwargs):
        hook(entry, scopes)
        return real(entry, scopes, *args, **kwargs)

    check.check_grouped = check_grouped
