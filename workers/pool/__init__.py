"""The pool: worker processes on this machine and their memory.

Admission (how many workers fit), launching, draining and aborting them, their rows'
lifecycle and the monitor's tick, the node's budget and the memory estimates it is
spent on.
"""
