"""GetModelMetadata and GetModelStatus answers, shared by the gRPC and REST front ends.

Why shared: TF-Serving's REST `GET /v1/models/NAME[/metadata]` is the JSON rendering of the
same protos its gRPC ModelService/PredictionService return; building the proto once keeps the
two in step (the metadata is a SignatureDefMap packed in an Any under "signature_def").
"""
from __future__ import annotations

from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2, model_pb2

from serving import errors
from serving.manager import ModelManager
from serving.servable import Servable

SIGNATURE_DEF_FIELD = "signature_def"


def check_metadata_fields(fields) -> None:
    if not fields:
        raise errors.invalid_argument("GetModelMetadataRequest must specify at least one metadata_field")
    for field in fields:
        if field != SIGNATURE_DEF_FIELD:
            raise errors.invalid_argument(f"Metadata field {field} is not supported")


def signature_def_map(servable: Servable) -> get_model_metadata_pb2.SignatureDefMap:
    result = get_model_metadata_pb2.SignatureDefMap()
    for key, definition in servable.meta_graph.signature_def.items():
        result.signature_def[key].CopyFrom(definition)
    return result


def model_metadata(servable: Servable) -> get_model_metadata_pb2.GetModelMetadataResponse:
    response = get_model_metadata_pb2.GetModelMetadataResponse()
    response.model_spec.name = servable.name
    response.model_spec.version.value = servable.version
    response.metadata[SIGNATURE_DEF_FIELD].Pack(signature_def_map(servable))
    return response


def model_status(manager: ModelManager, spec: model_pb2.ModelSpec) -> get_model_status_pb2.GetModelStatusResponse:
    response = get_model_status_pb2.GetModelStatusResponse()
    for version, record in manager.version_status(spec):
        status = response.model_version_status.add(version=version, state=record.state)
        status.status.SetInParent()  # TF-Serving always sends the status, OK included
        if record.error is not None:
            status.status.error_code = record.error.code.value[0]
            status.status.error_message = record.error.message
    return response
