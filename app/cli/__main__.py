"""``python -m app.cli``: the same as the ``jobplane`` command."""

from app.cli.main import main

main()
