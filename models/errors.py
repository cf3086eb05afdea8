"""The base of every error a user can act on, in a module that imports nothing.

``models`` must not import the rest of lipdub, yet its weights errors are as much the user's to
fix as the pipeline's: both derive from :class:`UserError`, which the CLI turns into one line.
"""


class UserError(Exception):
    """An error a user can act on; its message names the file or setting and how to fix it."""
