"""The labeling web app: labelers rank or thumb completions in a browser; admins run the project.

Modules, in the order a request meets them:

- ``server``     starts uvicorn (``alignloop serve``, or in-process for tests and demos)
- ``app``        builds the FastAPI app for one project (engines, templates, routers)
- ``auth``       signed session cookies, CSRF tokens, login rate limiting, role checks
- ``accounts``   labelers: invites, argon2 password hashes, deactivation
- ``guidelines`` versioned labeling instructions (a default version 1 per project)
- ``assignment`` who judges what: claiming slots under the overlap, validating and storing judgements
- ``routes_api`` the JSON API under ``/api`` (everything the pages do)
- ``routes_pages`` / ``routes_admin``  the server-rendered pages
- ``client``     ``LabelingClient``, a Python client of the JSON API (simulated labelers, scripts)
"""
