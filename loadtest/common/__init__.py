"""Helpers shared by the scenarios. Imported by locustfiles as ``common`` (Locust puts the
locustfile's folder on sys.path); nothing here is imported by the driver (loadtest/run.py)."""
