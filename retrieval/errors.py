"""The one failure family of the retrieval package; the API maps it to a 4xx answer."""


class RetrievalError(ValueError):
    """A query, vector or index operation that cannot be served as asked; the message says why."""


class UnknownBaseModelError(RetrievalError):
    """No expert is indexed for the requested base model (the API answers 404 rather than 422)."""
