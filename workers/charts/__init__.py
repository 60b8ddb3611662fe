"""Charts over time: per-minute samples written by the monitor tick, read back per range.

``sampling`` writes (and rolls up) the samples, ``series`` reads a range of them,
``svg`` draws them on the server, ``views`` serves the JSON and the HTML.
"""
