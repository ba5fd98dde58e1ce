"""Bounds on what one search may ask: plain constants, importable without faiss or the model.

The API's wire types (`registry.wire`) check the same ones, so the light client refuses a search
before sending it, the API before embedding it, and `TaskEmbedder` for direct callers.
"""

MAX_K = 100  # experts one search may return
MAX_QUERY_EXAMPLES = 20
# Characters of a query text or of one example. The model reads about 1,000 characters (256 word
# pieces) and longer text is cut unseen, so twice that leaves room without inviting essays.
MAX_QUERY_CHARS = 2000
