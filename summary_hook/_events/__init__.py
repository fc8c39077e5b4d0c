"""Events and storage: record framing, event files on disk, the writer thread, the
``FileWriter`` and the cache of one writer per directory."""
