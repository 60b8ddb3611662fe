"""A module that fails while it is imported (not with ImportError), for the tests that a
task naming it is refused with the reason, not a traceback."""

raise RuntimeError("this module fails on import, on purpose")
