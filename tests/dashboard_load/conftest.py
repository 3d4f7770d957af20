"""The load test gets a `conveyor up` of its own: its two minutes of steady load leave a
backlog that made the other browser tests, sharing one server, fail on timing."""

from tests.dashboard.conftest import *  # noqa: F403 - the same fixtures, a separate server
