"""Start-up of the command-line apps: the cyclic garbage collector paused while the big libraries import.

Importing torch, Lightning and scikit-learn creates ~0.9 M long-lived objects (modules, functions,
classes), nearly none of them garbage (~1.5 %); on the way the collector rescans the growing heap in ~8
full collections, 1-2 s of a 2-core machine's start-up. An app calls :func:`pause_collection` first thing
and :func:`resume_collection` once its job's libraries are imported: everything alive then is frozen
(``gc.freeze``, so later collections skip it, as CPython's docs advise for long-lived start-up state) and
collection resumes for the job itself.
"""

from __future__ import annotations

import gc

_state = {"paused": False, "done": False}


def pause_collection() -> None:
    """Pause cyclic garbage collection until :func:`resume_collection` (once per process)."""
    if not _state["done"] and gc.isenabled():
        gc.disable()
        _state["paused"] = True


def resume_collection() -> None:
    """Freeze what is alive and resume collection, if :func:`pause_collection` paused it; later calls (a
    multirun's next jobs) do nothing, so no job's objects are ever frozen."""
    if _state["paused"]:
        gc.freeze()
        gc.enable()
        _state["paused"] = False
    _state["done"] = True
