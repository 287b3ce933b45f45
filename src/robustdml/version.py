"""The version of robustdml (one place; the package, the CLI's --version and every stored result read it)."""

__version__ = "0.1.0"
