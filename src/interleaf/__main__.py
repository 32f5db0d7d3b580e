"""``python -m interleaf``: the same command as ``interleaf``."""

from interleaf.cli import main

if __name__ == "__main__":
    main()
