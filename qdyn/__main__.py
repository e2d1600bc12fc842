"""``python -m qdyn``: the same as the ``qdyn`` command."""

from .cli.app import main

if __name__ == "__main__":
    main()
