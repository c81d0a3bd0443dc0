"""The ``extremefast`` command line (installed as the package ``extremefast.cli``)."""
