"""``python -m snipit_cli`` runs the same CLI as the ``snipit`` script (torchrun needs ``-m``)."""

from snipit_cli.cli.app import main

if __name__ == "__main__":
    main()
