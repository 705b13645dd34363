"""Internals of the serve room; the public API is re-exported by ``serve``."""
