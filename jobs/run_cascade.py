"""spark-submit job: bring every level (or those up to --timeframe TF) up to date.

Takes the options of `rollup run` plus the global ones, in any order:

    spark-submit [spark options] jobs/run_cascade.py [--warehouse W] [--namespace N] [options]
"""

import sys

from rollup.cli.job import job_main

if __name__ == "__main__":
    sys.exit(job_main(sys.argv[1:], command="run"))
