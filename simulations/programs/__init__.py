"""Stand-alone programs that external-program kinds run; each is a script, not a module."""
