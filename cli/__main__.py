"""``python -m minidl.cli`` runs ``minidl-run``."""

from . import main

main()
