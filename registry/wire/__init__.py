"""The API's wire types: the JSON bodies that the hub and its client exchange, and their limits.

Both sides parse with these same pydantic models, so they cannot disagree silently about a field.
They import pydantic and plain-constant modules only, never SQL, FAISS or torch: the light client
(`registry.client`) installs and loads without the server. Building them from SQL rows is the
server's job (`registry.services.answers`).

- `limits.py`: lengths and bounds (the SQL columns use the same ones);
- `common.py`: finite floats, tags, min/mean/max summaries, the error body;
- `experts.py`: upload metadata, revisions, experts and their pages;
- `search.py`: a search and its answer; `accounts.py`: who am I and API tokens.
"""
