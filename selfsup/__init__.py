"""Self-supervised pre-training for fashion classification: the library the DVC stages call."""


class SelfSupError(Exception):
    """A problem the user can fix; stages print its message as one line and exit non-zero."""
