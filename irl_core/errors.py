"""The project's user-facing error: a problem with the user's input (a bad argument, a missing file, a run
directory another process owns), which the command line and the app report as one line without a traceback.

Library modules raise it (or one of the domain errors the command line lists beside it);
only the command line decides how it is printed.
"""


class UserError(Exception):
    """A problem with the user's input, reported as one line without a traceback."""
