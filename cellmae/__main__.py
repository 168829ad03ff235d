"""``python -m cellmae``: the same command line as ``cellmae``."""

from cellmae.cli import app

if __name__ == "__main__":
    app(prog_name="cellmae")
