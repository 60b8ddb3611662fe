"""The built-in simulation kinds; importing this package registers them."""

from . import lorenz, slab, summary

__all__ = ["lorenz", "slab", "summary"]
