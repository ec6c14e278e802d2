"""`python -m fastconv.bench._worker`: time one library in this process for `--isolate`.

Reads one JSON spec on stdin (see isolate.run_spec), prints one line of JSON with the
per-call times on stdout; anything else goes to stderr.
"""
import json
import sys

from .isolate import run_spec


def main():
    spec = json.loads(sys.stdin.read())
    result = run_spec(spec)
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
