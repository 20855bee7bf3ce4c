"""The control service: how the HTTP API and the ``mmats`` CLI operate a running system.

``service.SystemClient`` is the one client (reads in ``reads``, config versions and audit in ``history``,
actor plumbing in ``transport``); ``problems`` the typed errors and their HTTP statuses; ``schemas`` the
HTTP bodies; ``auth`` the API token; ``hub`` the event stream's poller; ``app`` and ``routes/`` the
FastAPI application that ``serve_app.py`` serves on Ray Serve.
"""
