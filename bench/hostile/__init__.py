"""The hostile-peer bench's parts (``bench/hostile_bench.py`` is the command).

``world``: the victim process probes (/proc CPU and RSS), the bench world, the scenario
runner and the attacker plumbing; ``scenarios``: one coroutine per attack. Benchmark code
only: never a test, never imported by the package. Expects the repository root on
``sys.path`` (``hostile_bench.py`` puts it there).
"""
