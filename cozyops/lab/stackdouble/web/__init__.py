"""The public API's route groups, one module per package of cozy-stack's ``web/``.

``errors`` (web/errors), ``middlewares`` (web/middlewares: tokens, permissions, blocked
instances), ``files`` and ``references`` (web/files), ``data`` (web/data), ``settings``
(web/settings), ``permissions`` (web/permissions), ``apps`` (web/apps), ``move`` (web/move).
Each module holds a mixin of ``PublicApp`` (../public.py, cozy-stack's web/routing.go) with its
handlers and its ``ROUTES``: (methods, pattern, handler name), in the order they are matched.
"""
