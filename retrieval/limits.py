"""Bounds on what one search may ask: plain constants, importable without faiss or the model.

The API's wire types (`registry.wire`) use them too, so the light client checks a search before
sending it without installing the retrieval stack.
"""

MAX_K = 100  # experts one search may return
MAX_QUERY_EXAMPLES = 20
MAX_QUERY_TEXT_CHARS = 20_000
