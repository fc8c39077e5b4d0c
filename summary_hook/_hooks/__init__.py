"""Hooks: the ``SessionRunHook`` protocol, the timers, ``SummarySaverHook``, restarts, and
one run of the hooks as every front end drives it."""
