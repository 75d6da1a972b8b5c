"""antenna-invariants: data invariants for Antenna's database, run by pytest.

Rules live in ``invariants/``; the engine is this package: ``connection`` (which database),
``schema`` (mirror vs live columns), ``scope`` (what a case covers), ``rules`` (the rule decorator and
check/repair), ``journal`` (every repair's writes, restorable), ``undo`` (restoring them), ``determination``
(the expected determination), ``plugin`` (pytest wiring) and ``reporting`` (JSON, HTML and terminal output).
"""
