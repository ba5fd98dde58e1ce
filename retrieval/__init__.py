"""Find experts by what they are good at: task embeddings and a FAISS index per base model.

Never imports `registry`, `storage` or `compeft_core`; the registry feeds it rows and vectors.
Import from the modules (nothing is loaded here, so `limits` stays light):
- `limits.py`: bounds on a search (no dependencies);
- `embedder.py`: `TaskEmbedder`, the sentence-transformers model shipped in a PyPI package;
- `lexical.py`: hashed character n-gram vectors of cards and queries;
- `fusion.py`: the second stage, which re-ranks the dense hits by a weighted sum of parts;
- `index.py` / `shard.py`: `ExpertIndex`, one FAISS shard per base model;
- `sync.py`: `IndexSync` keeps an index in step with the registry's change log;
- `errors.py`: `RetrievalError` and its kinds.
"""
