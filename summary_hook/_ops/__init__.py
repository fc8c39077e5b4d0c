"""Ops: what a summary is. Summary ops and their collections, and the ``Scaffold``."""
