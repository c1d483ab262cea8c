"""The web console: pages over ``/api/v1`` (and the partner routes) in zh-CN and en.

The pages are HTML shells rendered by the platform (:mod:`.routes`, Jinja2 templates under
``templates/``) with the words of the reader's language (:mod:`.catalog`); their data comes from
the browser's calls to the very routes an API client calls, with the signed-in person's token,
so a page never shows what its API would refuse. Every page is declared once in
:mod:`.pages` (path, template, script, navigation). Every asset is shipped in the package:
the console's scripts and styles under ``static/``, Apache ECharts vendored under
``static/vendor/`` (version and checksums in its ``MANIFEST.json``), and Swagger UI and ReDoc
for ``/docs`` and ``/redoc`` from the ``fastapi-offline`` package (:mod:`.docs`).

Imports nothing of the platform but :mod:`plantwire_platform.translation` (the catalogue
mechanism the API's error details share): the server (:mod:`plantwire_platform.server`) mounts it.
"""
