"""A PredictionService that answers every Predict with one fixed rating: the floor of gRPC.

Why: `benchmarks.serving` measures the model server with Python clients on the same host.
What part of a request's time is gRPC itself (grpcio's Python server and client, loopback,
the host's two cores) and what part is the model server is only known next to a server
that does nothing else: this one runs grpcio's sync server as serving.server does, with no
model, no validation and no conversion. Run by the benchmark; not part of the product.

    python -m benchmarks.noop_grpc_server --port PORT
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from concurrent import futures
from typing import Sequence

import grpc
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from model.signature_names import RATING_OUTPUT


class _Fixed(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self) -> None:
        self.response = predict_pb2.PredictResponse()
        self.response.outputs[RATING_OUTPUT].CopyFrom(
            tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, float_val=[3.5],
                                   tensor_shape={"dim": [{"size": 1}]}))

    def Predict(self, request, context):  # noqa: N802 - gRPC's method name
        return self.response


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.noop_grpc_server", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4 * (os.cpu_count() or 1)))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(_Fixed(), server)
    server.add_insecure_port(f"127.0.0.1:{args.port}")
    server.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    server.stop(0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
