"""Domain errors of the pipeline: each message names the file, frame or setting and how to fix it.

The CLI turns these into one line on stderr and a nonzero exit (``LIPDUB_DEBUG=1`` re-raises);
Prefect tasks let them propagate so that runs end in a failed state with the same message.
"""

from __future__ import annotations

from lipdub.models.errors import UserError


class LipdubError(UserError):
    """Base class for every error of the pipeline a user can act on (the weights' errors in
    ``lipdub.models.weights`` share its base, :class:`lipdub.models.errors.UserError`)."""


class MediaError(LipdubError):
    """A media file is missing, unreadable, truncated or lacks the stream we need."""


class AudioError(MediaError):
    """An audio input is unusable (no audio stream, empty, zero length)."""


class RegistryError(LipdubError):
    """An unknown weights name, or a registry entry that cannot be downloaded or verified."""
