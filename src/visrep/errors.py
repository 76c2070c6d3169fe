"""One error type for user mistakes, so the CLI can report them in one line with exit code 2."""


class UserError(Exception):
    """A mistake in the user's input (path, config, data, run directory).

    The CLI prints ``error: <message>`` and exits with code 2, without a traceback.
    Library callers can catch it like any exception.
    """

    exit_code = 2


class TrainingDiverged(UserError):
    """A NaN/Inf loss or gradient stopped training; the last good checkpoint is kept as it was."""

    exit_code = 3
