"""The command-line interface (click); a thin layer over the Python API."""
