"""python -m usdtune_executor --daemon HOST:PORT (hosts/headless.py)"""
import sys

from .hosts.headless import main

if __name__ == "__main__":
    sys.exit(main())
