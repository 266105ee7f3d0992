"""``python -m irl_core.jobs RUN_DIR``: the worker a backend starts for one job (``irl_core.jobs.local.work``)."""
import sys

from irl_core.jobs.local import work

if __name__ == "__main__":  # started by a backend, which feeds (then closes) its stdin
    sys.exit(work(sys.argv[1]))
