"""spark-submit job: recompute --start .. --end and propagate upward.

Takes the options of `rollup backfill` plus the global ones, in any order:

    spark-submit [spark options] jobs/backfill.py [--warehouse W] [--namespace N] [options]
"""

import sys

from rollup.cli.job import job_main

if __name__ == "__main__":
    sys.exit(job_main(sys.argv[1:], command="backfill"))
