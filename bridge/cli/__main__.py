"""``python -m bridge.cli``: the ``stepup`` command, as the tests and benchmarks start it."""

from . import main

if __name__ == "__main__":
    main()
