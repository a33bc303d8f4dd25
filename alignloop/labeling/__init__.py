"""The labeling web app: labelers rank or thumb completions in a browser; admins run the project.

Modules, in the order a request meets them:

- ``server``       starts uvicorn (``alignloop serve``, or in-process for tests and demos)
- ``app``          builds the FastAPI app for one project; dependencies, error handlers, security headers
- ``auth``         signed session cookies, CSRF tokens, sign-in throttling
- ``routes_api``   the JSON API under ``/api`` (everything the pages do)
- ``routes_pages`` / ``routes_admin``  the server-rendered pages (``templates/``, ``static/``)
- ``service``      what the app does, independent of HTTP (one short transaction per call)
- ``accounts``     labelers: invites, argon2 password hashes, deactivation
- ``guidelines``   versioned labeling instructions (a default version 1 per project)
- ``assignment``   who judges what: claims under the overlap, storing judgements exactly once
- ``board``        in-process index of open slots that proposes the next task cheaply
- ``validation``   checks a submitted ranking/thumbs/flags against its task
- ``db``           read and write transactions (the write lock taken up front)
- ``exports``      judgement and pair exports, the labeler-quality chart (calls the consensus stage)
- ``config``       the settings of ``labelers add`` and ``export-judgements`` (light: the CLI reads them)
- ``client``       ``LabelingClient``, a Python client of the JSON API (simulated labelers, scripts)
- ``sample_data``  synthetic tasks for tests, benchmarks and demos
"""
