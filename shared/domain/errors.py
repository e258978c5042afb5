"""Domain errors: every rejection carries a reason a client can act on."""


class TrackingError(Exception):
    """Base class for errors Footfall reports to its callers."""


class InvalidEventError(TrackingError):
    """An event (or request) does not follow the tracking spec; `reason` says which field and why."""

    def __init__(self, reason: str, *, field: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.field = field


class PayloadTooLargeError(InvalidEventError):
    """A request, batch or event is over one of the size limits."""


class AuthenticationError(TrackingError):
    """Missing or wrong write key, or a bad/stale signature."""


class UnknownSourceError(TrackingError):
    """A source id that does not exist."""


class RuleDefinitionError(TrackingError):
    """A segment rule file is wrong; the message names the file, the rule and the problem."""


class ConfigurationError(TrackingError):
    """Settings or a source definition that cannot work."""
