"""``python -m distilld`` is the ``distilld`` command."""

from distilld.cli import main

raise SystemExit(main())
