"""Headless host: python -m usdtune_executor --daemon HOST:PORT [--token-file F]

The executor token comes from USDTUNE_TOKEN (or --token-file), the CA to trust for TLS from
USDTUNE_TLS_CA (`usdtune executor` and the daemon's own executors set both)."""
import argparse
import logging
import os
import signal
import sys
import threading

from ..connection import run_executor, use_reach, use_token_file


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m usdtune_executor",
                                     description="Connect to a usdtuned daemon and execute its tasks.")
    parser.add_argument("--daemon", required=True, help="daemon address, HOST:PORT")
    parser.add_argument("--executor-id", default=f"standalone-{os.getpid()}")
    parser.add_argument("--token-file", help="file holding the daemon's executor token (else USDTUNE_TOKEN)")
    parser.add_argument("--path-root", action="append", default=[],
                        help="a folder this executor reaches (repeatable; else USDTUNE_PATH_ROOTS, else every path)")
    parser.add_argument("--path-map", action="append", default=[],
                        help="DAEMON_PREFIX=EXECUTOR_PREFIX (repeatable; else USDTUNE_PATH_MAP)")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    use_reach(args.path_root, args.path_map)
    if args.token_file:
        try:
            use_token_file(args.token_file)
        except OSError as err:
            print(f"Error: token_file_unsafe: {args.token_file}: {err.strerror}", file=sys.stderr)
            return 2
    # usd-optimize and USD log through C++ straight to fd 1; keep stdout for the host's own
    # output (e.g. `usdtune optimize --json`) by sending everything native to stderr.
    os.dup2(2, 1)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="[executor %(levelname)s] %(message)s", stream=sys.stderr)
    # SIGTERM ends the connection in order, and with it every worker process a task started.
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    return run_executor(args.daemon, args.executor_id, runtime="standalone", stop_event=stop)
