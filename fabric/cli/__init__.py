"""The ``fabric`` command line. The entry point is :func:`fabric.cli.main.main` (console script
``fabric``); each sub-command lives in its own module and ``options`` holds the shared options and the
one-line error exit. Nothing is imported here, so ``fabric.cli.main`` stays the module (tests patch it)."""

__all__: list[str] = []
