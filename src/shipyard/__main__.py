"""``python -m shipyard`` runs the command line."""

from shipyard.cli import main

if __name__ == "__main__":  # a spawned child process imports this module too
    main()
