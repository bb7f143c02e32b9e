"""Worker processes, Ray actors, Ctrl-C handling."""
