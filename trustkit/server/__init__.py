"""Layer `server`: the Notary-compatible trust server.  ``create_app`` builds the ASGI app from a
``Storage`` and ``ServerKeys``; ``config.build_app``/``config.run`` wire it from settings."""
