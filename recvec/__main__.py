"""`python -m recvec` runs the CLI."""

from recvec.cli import main

if __name__ == "__main__":
    main()
