"""trustkit: sign container images the Docker Content Trust way.

Layers (each imports only the ones before it): encoding, reference, keys, metadata, trust,
repository, notary/registry/auth, server, cli.  Nothing heavy is imported here so that
``trustkit --version`` and library users pay only for what they use.
"""

__version__ = "0.1.0"
