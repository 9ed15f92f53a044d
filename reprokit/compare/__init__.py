"""The comparison engine: pure functions that say whether a value reproduced, and how not.

Modules (import the one you need; nothing heavy is imported here):

- :mod:`reprokit.comparison` — ``Tolerance``, ``Deviation``, ``ValueComparison``;
- :mod:`reprokit.compare.values` — ``compare_values`` for any supported value (scalars, str,
  None, nested lists/dicts, numpy arrays, torch tensors, pandas objects);
- :mod:`reprokit.compare.arrays` — ``compare_arrays``, chunked and multithreaded;
- :mod:`reprokit.compare.frames` — ``compare_frames`` / ``compare_series`` (pandas);
- :mod:`reprokit.compare.summary` — ``ArraySummary``, ``summarize_array``,
  ``compare_summaries`` for arrays too large to keep;
- :mod:`reprokit.compare.envdiff` — ``diff_snapshots`` → ``EnvDiff``;
- :mod:`reprokit.compare.outputs` — ``compare_outputs`` for cell output texts;
- :mod:`reprokit.compare.cells` — ``compare_cell_outputs`` against the lock's fingerprints,
  ``first_failing`` for the first cell that diverged.

Semantics shared by all of them (see :mod:`reprokit.comparison` for the details):

- ``reproduced``: identical (same type/dtype/shape, same values; NaN equals NaN, the NaN
  payload is ignored); ``within_tolerance``: every element passes
  ``|current - reference| <= atol + rtol * |reference|`` but something is not identical
  (a value, -0.0 vs 0.0, or a type/dtype change); ``differs``: anything else.
- No tolerance declared means exact: a float must be equal, not merely close.
- Integers, bools, strings and other non-float values are always compared exactly.
"""
