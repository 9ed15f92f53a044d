"""The background writer's command: ``python -m reprokit.recording.handoff_main <journal>``.

:func:`reprokit.recording.handoff.spawn_writer` starts it; the work is
:mod:`reprokit.recording.handoff`'s. It is a module of its own, which nothing imports, because
``python -m`` runs a module as ``__main__`` after importing its package: ``reprokit.recording``
imports ``handoff`` (its live runs hand over through it), and running that module itself
would make runpy warn, at the top of every writer log, that it was imported already.
"""

from __future__ import annotations

import sys

from reprokit.recording.handoff import _main

if __name__ == "__main__":
    sys.exit(_main(sys.argv))
