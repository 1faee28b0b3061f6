"""An emulated Istio control plane: the Istio CA and an xDS server, one istiod per mesh cluster.

Layers, from pure to I/O:

* `model.py`    the mesh as istiod sees it (services, workloads, routing and security policy)
* `nodes.py`    who a connected proxy is, from its xDS node id and metadata
* `ca.py`       certificate signing and caller authentication
* `envoy.py`    model + proxy -> Envoy sidecar / whitebox resources (proto JSON)
* `grpcgen.py`  model + proxy -> proxyless gRPC resources (proto JSON)
* `ads.py`      the per-stream SotW state machine (versions, nonces, ACK/NACK)
* `protos.py`   the Istio CA messages and proto JSON -> `Any` packing
* `server.py`   the grpc.aio server (CA, ADS, SDS) and its debug HTTP app
* `from_kube.py` fills a model from the emulated Kubernetes API (when it exists)
"""
