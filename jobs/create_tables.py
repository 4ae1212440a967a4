"""spark-submit job: create the namespace and every table (idempotent).

Takes the options of `rollup init` plus the global ones, in any order:

    spark-submit [spark options] jobs/create_tables.py [--warehouse W] [--namespace N] [options]
"""

import sys

from rollup.cli.job import job_main

if __name__ == "__main__":
    sys.exit(job_main(sys.argv[1:], command="init"))
