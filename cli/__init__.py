"""The ``lipdub`` command line: the top layer, one module a command (``main`` lists them)."""
