"""The web layer's parts: the JSON API, admin authentication, routing, response headers and
metrics. :class:`~taskflow.admin.TaskAdmin` puts them (and the dashboard) on an app.
"""
