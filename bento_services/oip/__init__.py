"""The Open Inference Protocol (KServe v2) for a Bento: its gRPC form on a port of its own,
its REST form under ``/v2``, both answering through the service's one prediction path.

``grpc_predict_v2.proto`` is KServe's, vendored unchanged (its header says where from);
``grpc_predict_v2_pb2*.py`` are generated from it by ``python -m bento_services.oip.regenerate``.
"""
