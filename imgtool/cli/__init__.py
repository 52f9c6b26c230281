"""The command line: parses, calls the public API (imgtool/api.py), prints."""
