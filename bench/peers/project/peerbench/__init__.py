"""A minimal Django project hosting one peer task queue at a time for bench/peers/run.py."""
