"""Run by headless Kit with --exec when usdtuned starts Kit as an executor (`--runtime kit`):
keep Kit alive while the executor extension serves the daemon, until the daemon shuts it
down or the connection ends. Without a run loop, Kit would quit as soon as --exec returns."""
from usdtune_executor.hosts.kit import wait_for_executor

wait_for_executor(timeout_s=None)
