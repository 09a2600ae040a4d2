"""A fake executor, for the deadline test only: it attaches to a daemon, says it can run every
task kind, keeps heartbeating, and never answers a task — what a hung native call looks like
from the daemon. It prints each message it receives (`task`, `cancel`, `shutdown`).

Usage: python silent_executor.py HOST:PORT
"""
import os
import sys
import time

import grpc
from usdtune.v1 import usdtune_pb2 as pb
from usdtune.v1 import usdtune_pb2_grpc as pb_grpc
from usdtune_executor import PROTOCOL_VERSION
from usdtune_executor.connection import auth_metadata
from usdtune_executor.tasks import TASK_HANDLERS


def messages():
    yield pb.ExecutorMessage(hello=pb.Hello(
        executor_id="silent", runtime="standalone", python_version="3", usd_version="0",
        task_kinds=sorted(TASK_HANDLERS), pid=os.getpid(), protocol_version=PROTOCOL_VERSION))
    while True:
        time.sleep(0.5)
        yield pb.ExecutorMessage(heartbeat=pb.Heartbeat(unix_ms=int(time.time() * 1000)))


def main(address: str) -> None:
    call = pb_grpc.ExecutorServiceStub(grpc.insecure_channel(address)).Attach(messages(), metadata=auth_metadata())
    for message in call:
        print(message.WhichOneof("body"), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
