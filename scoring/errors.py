"""One exception base for the whole package.

Every failure a user can cause (a bad dataset, pool file, checkpoint, project or destination)
raises a subclass of :class:`ImageTriageError` whose message is one sentence naming the file
and what to do. The command line catches this base once and prints that sentence, with no
traceback; anything else escaping is a bug in Image Triage.
"""

from __future__ import annotations


class ImageTriageError(Exception):
    """An expected failure; ``str(exc)`` names the file and what to do, on one line."""

    def __str__(self) -> str:
        # One line whatever the message: a newline in a file name or a wrapped library
        # message must not turn the error into several lines.
        return " ".join(super().__str__().split("\n"))


class UnsafePathError(ImageTriageError, ValueError):
    """A path Image Triage refuses to read or write: a special file, a file past the size cap,
    a destination that holds the user's originals or the project, a folder it did not create."""
