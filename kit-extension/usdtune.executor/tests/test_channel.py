"""The executor's channel takes messages as large as the daemon's executor service does
(64 MiB): gRPC's own default, 4 MiB, refused a 1M-prim composed set's validation task as it
arrived. A real gRPC server in this process sends an 8 MiB reply over each kind of channel."""
from concurrent import futures

import grpc
import pytest

from usdtune_executor.connection import MAX_MESSAGE_BYTES, open_channel

BIG = 8 << 20


@pytest.fixture()
def server():
    handler = grpc.method_handlers_generic_handler(
        "t", {"Big": grpc.unary_unary_rpc_method_handler(lambda request, context: b"x" * BIG)})
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1), handlers=[handler],
                         options=[("grpc.max_send_message_length", MAX_MESSAGE_BYTES)])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(None)


def test_a_task_larger_than_grpcs_default_arrives(server, monkeypatch):
    monkeypatch.delenv("USDTUNE_TLS_CA", raising=False)
    with open_channel(server) as channel:
        assert len(channel.unary_unary("/t/Big")(b"", timeout=30)) == BIG
    with grpc.insecure_channel(server) as default:
        with pytest.raises(grpc.RpcError) as refused:
            default.unary_unary("/t/Big")(b"", timeout=30)
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, "the limit the channel's options lift"
