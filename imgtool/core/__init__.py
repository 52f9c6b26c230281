"""Foundations with no domain in them: the version, errors and their exit codes, reading a
user's file safely, settings, result formats, log plumbing, and the store (paths, locks,
atomic writes). Imports nothing else of imgtool."""
