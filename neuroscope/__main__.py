"""``python -m neuroscope`` is the ``neuroscope`` command."""
from .cli import main

main()
