"""Evaluation on the device: a due step's functions called, histograms counted, values
combined across ranks, and everything moved to the host in one transfer per device."""
