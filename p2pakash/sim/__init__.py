"""The in-process multi-node simulator: scenarios, virtual time, faults, invariants, reports.

See ``docs/simulation.md``. Entry points: ``scenario.load_scenario``, ``runner.run`` and
``report.write_report``; the CLI is ``p2pakash sim``.
"""
