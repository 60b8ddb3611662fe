#!/usr/bin/env python
"""manage.py of the throwaway project that runs the peer task queues."""

from __future__ import annotations

import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "peerbench.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
