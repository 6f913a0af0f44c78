"""Storage: model metadata in SQLAlchemy, artifacts in a store addressed by URL.

Rule of this layer: no Flask, no ML libraries. It stores and returns plain records.
"""

from wharf.storage.artifacts import ArtifactStore as ArtifactStore
from wharf.storage.artifacts import open_artifact_store as open_artifact_store
from wharf.storage.metadata import MetadataStore as MetadataStore
from wharf.storage.metadata import VersionRecord as VersionRecord
