"""rollup job for spark-submit: `<global options> COMMAND [ARGS]`, as for the rollup CLI."""

import sys

from rollup.cli.job import job_main

if __name__ == "__main__":
    sys.exit(job_main(sys.argv[1:]))
