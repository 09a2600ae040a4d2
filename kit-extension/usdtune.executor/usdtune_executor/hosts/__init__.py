"""The two hosts of the executor: Kit (the `usdtune.executor` extension, `kit.py`, the only
module that imports omni.*) and plain Python (`python -m usdtune_executor`, `headless.py`).
Both run the same session (connection.run_executor); only how it is started differs."""
