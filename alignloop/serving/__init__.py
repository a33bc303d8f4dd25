"""The model server (``alignloop serve-model``): the project's policy behind an OpenAI-compatible API, and
feedback from its users stored as judgements, so the next round trains on labelers' and users' feedback.

- ``config``     ``ServeModelConfig``, the settings of ``serve-model`` (a light module the CLI reads)
- ``server``     loads the policy and starts uvicorn (``serve-model``, or in-process for tests)
- ``sampler``    the loaded policy: chat template, n answers per request, per-answer seeds (vLLM or built-in)
- ``app``        the HTTP API: ``/v1/models``, ``/v1/chat/completions``, ``/v1/feedback``, sign-in
- ``exchanges``  served answers and feedback in the store: serve rounds, assignments, judgements
"""
