"""The `movielens` namespace of the project's custom TFX artifact types, as KFP v2 steps import them.

Why this package exists: TFX's Kubeflow V2 compiler writes a custom artifact type's
TYPE_NAME as its KFP schema title and requires the `namespace.Title` shape (one dot,
tfx.orchestration.kubeflow.v2.compiler_utils), and TFX's step entrypoint recovers the Python
class by importing that title as a class path (kubeflow_v2_entrypoint_utils.
_retrieve_class_path). So the title `movielens.Catalogue` (data.catalogue.
MovieLensCatalogue.TYPE_NAME) must import as a class: this module is that alias, nothing more.
"""
from data.catalogue import MovieLensCatalogue as Catalogue

__all__ = ["Catalogue"]
