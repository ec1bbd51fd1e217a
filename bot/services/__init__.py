"""Domain rules: each function that changes state runs in one transaction."""


class Refused(Exception):
    """A rule said no. `reason` names the template (templates/messages/) that explains it to
    the person who asked; `values` fill it in."""

    def __init__(self, reason: str, **values):
        super().__init__(reason)
        self.reason = reason
        self.values = values
