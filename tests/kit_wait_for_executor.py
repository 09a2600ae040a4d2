"""Run by headless Kit with --exec: keep Kit alive while the usdtune executor serves its daemon."""
from usdtune_executor.hosts.kit import wait_for_executor

wait_for_executor(timeout_s=300)
