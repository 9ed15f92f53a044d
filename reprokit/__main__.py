"""``python -m reprokit`` is the ``reprokit`` command."""

from reprokit.cli import main

if __name__ == "__main__":
    main()
