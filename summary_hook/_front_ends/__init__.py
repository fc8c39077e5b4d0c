"""Front ends: ``MonitoredSession`` for plain loops and the Lightning callbacks; each
only translates its framework's events into the hook protocol."""
