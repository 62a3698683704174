"""The project's user-facing errors.

Every error a user can cause or fix (bad params, a corrupted or truncated artifact, a wrong checksum, an
unsafe archive, a diverged run) derives from :class:`KaratError`. Its message names the file or field, the
value found and what to do; the stage shells print it as ``error: <message>`` and exit with code 2, with no
traceback. Anything else is a bug and keeps its traceback.
"""
from __future__ import annotations


class KaratError(Exception):
    """An error whose message is complete on its own: printed without a traceback by every stage."""


class CorruptArtifactError(KaratError):
    """A file the pipeline wrote (or was given) is truncated, unreadable or fails its checksum."""
