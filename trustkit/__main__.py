"""``python -m trustkit`` runs the CLI."""

from trustkit.cli import main

main()
