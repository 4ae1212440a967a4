"""spark-submit job: compact files, rewrite manifests, expire snapshots, remove orphan files.

Takes the options of `rollup maintain` plus the global ones, in any order:

    spark-submit [spark options] jobs/maintain.py [--warehouse W] [--namespace N] [options]
"""

import sys

from rollup.cli.job import job_main

if __name__ == "__main__":
    sys.exit(job_main(sys.argv[1:], command="maintain"))
