"""`python -m rollup.cli`: the same as the `rollup` command."""

from rollup.cli import main

raise SystemExit(main())
