"""Load tests of the kit: Locust scenarios (the *.py files next to this one) and their driver.

``python -m loadtest.run`` (``make loadtest``) is the driver. It never imports Locust or gevent:
Locust runs in a subprocess, so nothing here monkey-patches the driver's (or pytest's) process.
"""
