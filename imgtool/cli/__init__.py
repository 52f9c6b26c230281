"""The command line: parses, calls the public API (imgtool/api.py, api_training.py, api_store.py), prints."""
