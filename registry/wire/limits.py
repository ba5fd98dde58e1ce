"""Lengths and bounds of what the API accepts, declared once: the wire types check them before a
request is sent or served, and the SQL columns (`registry.db.models`) are sized by them."""

ID_PART_LENGTH = 96  # owner or expert name (registry.ids has the rules)
TAG_LENGTH = 64
MESSAGE_LENGTH = 4000  # a revision's message, like a commit message
BASE_MODEL_LENGTH = 512
LICENSE_LENGTH = 64
VARIANT_LENGTH = 64
DATASET_LENGTH = 128
MAX_DATASETS = 32
TOKEN_NAME_LENGTH = 64
SQL_INTEGER_MAX = 2**31 - 1  # SQL INTEGER columns are 32-bit on PostgreSQL
MAX_TOKEN_DAYS = 3650
TOKEN_NAME_PATTERN = rf"[A-Za-z0-9_ .:@-]{{1,{TOKEN_NAME_LENGTH}}}"
MAX_EXCLUDED = 1000
LIST_QUERY_LENGTH = 256  # the text a listing searches for (`GET /api/v1/experts?q=`)
