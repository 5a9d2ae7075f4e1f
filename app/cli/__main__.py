"""``python -m jobplane.cli``: the same as the ``jobplane`` command."""

from jobplane.cli.main import main

main()
