"""Content-addressed blob storage: one interface, a local-folder and an S3 backend."""

from storage.base import BlobNotFoundError, BlobStore, StorageError
from storage.factory import open_blob_store
from storage.local import LocalBlobStore
from storage.s3 import S3BlobStore

__all__ = [
    "BlobNotFoundError",
    "BlobStore",
    "LocalBlobStore",
    "S3BlobStore",
    "StorageError",
    "open_blob_store",
]
