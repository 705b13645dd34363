"""The ``fabric`` command line: one entry point (:func:`main`) and its sub-commands."""

from fabric.cli.main import main

__all__ = ["main"]
