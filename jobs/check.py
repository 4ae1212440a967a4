"""spark-submit job: data quality checks per timeframe.

Takes the options of `rollup check` plus the global ones, in any order:

    spark-submit [spark options] jobs/check.py [--warehouse W] [--namespace N] [options]
"""

import sys

from rollup.cli.job import job_main

if __name__ == "__main__":
    sys.exit(job_main(sys.argv[1:], command="check"))
