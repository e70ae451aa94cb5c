"""The spool directory: a file dropped there becomes a committed dispatch.

``formats`` holds the two file formats (OpenClaw's spool event v1 and shepherd's own),
the directory layout and atomic writes, as plain functions; ``actor`` is the watcher
that ingests the files.
"""
