"""``python -m lipdub.cli``: the ``lipdub`` console script without its launcher."""

from lipdub.cli.main import entry

entry()
