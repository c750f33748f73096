"""User-facing errors: one line that names the file, column, row or key, and the valid choices."""


class HarnessError(Exception):
    """A problem with the user's input or configuration. The CLI prints it on one line and exits 2."""


def choices(kind: str, name: str, known) -> HarnessError:
    known = sorted(known)
    return HarnessError(f"no {kind} '{name}'; known: {', '.join(known) if known else '(none)'}")
