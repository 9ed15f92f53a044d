"""One module per public verb: what the front ends (CLI, magics, pytest plugin) call.

- :mod:`reprokit.api.run` — ``run``: execute notebooks, each recorded as an MLflow run;
- :mod:`reprokit.api.record` — ``record``: execute and write each notebook's lock;
- :mod:`reprokit.api.verify` — ``verify``: re-execute and compare with the lock;
- :mod:`reprokit.api.diff` — ``diff``: two recorded executions, or one and the environment now;
- :mod:`reprokit.api.check` — ``check_locks``: are the locks current (the pre-commit hook);
- :mod:`reprokit.api.session` — ``start``/``result``/``end``: the run of a live notebook.

These modules sit above the stages and wire them together; importing this package imports none
of them.
"""
