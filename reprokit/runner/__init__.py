"""The run stage: plan and execute notebooks with papermill, each in its own kernel, on CPU or
CUDA (:mod:`~reprokit.runner.plan`, :mod:`~reprokit.runner.execute`,
:mod:`~reprokit.runner.kernels`, :mod:`~reprokit.runner.device`, :mod:`~reprokit.runner.params`).
Recording an execution is the record stage's (:mod:`reprokit.recording.executed`); running
many notebooks is the ``run`` verb's (:mod:`reprokit.api.run`). Importing this package imports
nothing else."""
