"""Tasks for this repository: the tally-tasks collection itself (`inv --list`)."""

from tally_tasks import ns  # noqa: F401
