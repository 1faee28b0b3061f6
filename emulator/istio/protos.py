"""Wire types: the Istio CA messages, and proto JSON resources packed into `Any`.

No Istio proto package is published on PyPI, so the two CA messages are built
here from a descriptor (`istio/api: security/v1alpha1/ca.proto`, package
`istio.v1.auth`) in a private pool, leaving the default pool untouched:

    message IstioCertificateRequest  { string csr = 1; int64 validity_duration = 3;
                                       google.protobuf.Struct metadata = 4; }
    message IstioCertificateResponse { repeated string cert_chain = 1; }

Envoy's types come from `xds-protos`; importing the modules below registers
every message our renderers name in a `@type`, so proto JSON parses into them.
"""

from __future__ import annotations

from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2  # noqa: F401 - registers the type
from envoy.extensions.filters.http.router.v3 import router_pb2  # noqa: F401
from envoy.extensions.filters.listener.original_dst.v3 import original_dst_pb2  # noqa: F401
from envoy.extensions.filters.listener.tls_inspector.v3 import tls_inspector_pb2  # noqa: F401
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2,  # noqa: F401
)
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2  # noqa: F401
from envoy.extensions.transport_sockets.raw_buffer.v3 import raw_buffer_pb2  # noqa: F401
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2, tls_pb2  # noqa: F401
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2  # noqa: F401
from google.protobuf import (  # type: ignore[import-untyped]
    any_pb2,
    descriptor_pb2,
    descriptor_pool,
    json_format,
    struct_pb2,
)
from google.protobuf.message import Message  # type: ignore[import-untyped]
from google.protobuf.message_factory import GetMessageClass  # type: ignore[import-untyped]

LISTENER = "type.googleapis.com/envoy.config.listener.v3.Listener"
ROUTE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
CLUSTER = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
ENDPOINT = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
SECRET = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"  # noqa: S105

SHORT = {LISTENER: "LDS", ROUTE: "RDS", CLUSTER: "CDS", ENDPOINT: "EDS", SECRET: "SDS"}
PUSH_ORDER = (CLUSTER, ENDPOINT, LISTENER, ROUTE, SECRET)
"""Istio's push order: clusters before their endpoints, listeners before their routes."""

_MESSAGES: dict[str, type[Message]] = {
    LISTENER: listener_pb2.Listener,
    ROUTE: route_pb2.RouteConfiguration,
    CLUSTER: cluster_pb2.Cluster,
    ENDPOINT: endpoint_pb2.ClusterLoadAssignment,
    SECRET: secret_pb2.Secret,
}

CA_SERVICE = "istio.v1.auth.IstioCertificateService"
CA_METHOD = f"/{CA_SERVICE}/CreateCertificate"


def _ca_messages() -> tuple[type[Message], type[Message]]:
    pool = descriptor_pool.DescriptorPool()
    struct_file = descriptor_pb2.FileDescriptorProto()
    struct_pb2.DESCRIPTOR.CopyToProto(struct_file)
    pool.Add(struct_file)
    f = descriptor_pb2.FileDescriptorProto(
        name="security/v1alpha1/ca.proto",
        package="istio.v1.auth",
        syntax="proto3",
        dependency=["google/protobuf/struct.proto"],
    )
    t = descriptor_pb2.FieldDescriptorProto
    request = f.message_type.add(name="IstioCertificateRequest")
    request.field.add(name="csr", number=1, type=t.TYPE_STRING, label=t.LABEL_OPTIONAL)
    request.field.add(name="validity_duration", number=3, type=t.TYPE_INT64, label=t.LABEL_OPTIONAL)
    request.field.add(
        name="metadata",
        number=4,
        type=t.TYPE_MESSAGE,
        label=t.LABEL_OPTIONAL,
        type_name=".google.protobuf.Struct",
    )
    response = f.message_type.add(name="IstioCertificateResponse")
    response.field.add(name="cert_chain", number=1, type=t.TYPE_STRING, label=t.LABEL_REPEATED)
    pool.Add(f)
    return (
        GetMessageClass(pool.FindMessageTypeByName("istio.v1.auth.IstioCertificateRequest")),
        GetMessageClass(pool.FindMessageTypeByName("istio.v1.auth.IstioCertificateResponse")),
    )


IstioCertificateRequest, IstioCertificateResponse = _ca_messages()


def pack(type_url: str, resource: dict[str, Any]) -> any_pb2.Any:
    """A proto JSON resource as `Any`; ParseError names a field Envoy would reject."""
    message = json_format.ParseDict(resource, _MESSAGES[type_url]())
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def parse(type_url: str, resource: dict[str, Any]) -> Message:
    """The typed message for a proto JSON resource (for validation in tests)."""
    return json_format.ParseDict(resource, _MESSAGES[type_url]())


def to_json(message: Message) -> Any:
    """Any message as proto JSON with the original field names."""
    return json_format.MessageToDict(message, preserving_proto_field_name=True)
