"""Find experts by what they are good at: task embeddings and a FAISS index per base model.

Never imports `registry`, `storage` or `compeft_core`; the registry feeds it rows and vectors.
"""

from retrieval.embedder import MAX_QUERY_EXAMPLES, MAX_QUERY_TEXT_CHARS, TaskEmbedder
from retrieval.errors import RetrievalError, UnknownBaseModelError
from retrieval.index import MAX_K, ExpertIndex, ExpertRecord
from retrieval.shard import Hit, IndexConfig
from retrieval.sync import ChangeSet, IndexSync

__all__ = [
    "MAX_K",
    "MAX_QUERY_EXAMPLES",
    "MAX_QUERY_TEXT_CHARS",
    "ChangeSet",
    "ExpertIndex",
    "ExpertRecord",
    "Hit",
    "IndexConfig",
    "IndexSync",
    "RetrievalError",
    "TaskEmbedder",
    "UnknownBaseModelError",
]
