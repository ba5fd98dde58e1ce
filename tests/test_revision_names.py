"""One name per revision field, from the upload to the answer: the API's revision fields are the
row's attributes of the same name (the answers are built from the row with `from_attributes`), and
the compressed upload that fills the row uses those names too."""

from __future__ import annotations

from dataclasses import fields

from registry.db.models import Revision
from registry.services.ingest import CompressedUpload
from registry.wire.experts import RevisionCreated, RevisionDetail

# On the row, `id` is the primary key; the API's `id` (owner/name) is read from `owner_and_name`.
# `created` and `warnings` say what one upload did, not what the revision is.
WIRE_ONLY = {"id", "created", "warnings"}
# The bytes go to the blob store; the metadata fills several; the adapter's own base model stays
# in the stored adapter config; the warnings go into the answer.
UPLOAD_ONLY = {"blob", "metadata", "recorded_base_model", "warnings"}


def test_every_revision_field_the_api_answers_is_a_row_attribute_of_that_name() -> None:
    for model in (RevisionCreated, RevisionDetail):
        names = set(model.model_fields) - WIRE_ONLY
        assert {name for name in names if not hasattr(Revision, name)} == set(), model.__name__
    assert isinstance(Revision.owner_and_name, property)


def test_the_compressed_upload_names_its_fields_as_the_row_does() -> None:
    names = {field.name for field in fields(CompressedUpload)} - UPLOAD_ONLY
    assert {name for name in names if not hasattr(Revision, name)} == set()
