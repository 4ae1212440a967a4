"""spark-submit job: drop expired partitions, expire old snapshots.

Takes the options of `rollup retention` plus the global ones, in any order:

    spark-submit [spark options] jobs/retention.py [--warehouse W] [--namespace N] [options]
"""

import sys

from rollup.cli.job import job_main

if __name__ == "__main__":
    sys.exit(job_main(sys.argv[1:], command="retention"))
