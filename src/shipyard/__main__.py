"""``python -m shipyard`` runs the command line."""

from shipyard.cli import main

main()
