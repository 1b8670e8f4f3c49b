"""Reading pools: any supported file in, normalised records and reasoned rejections out."""

from daar.read.formats import SUFFIXES, Pool, PoolError, check_pool, file_sha256, read_pool
from daar.read.hub import DatasetPool, PoolSource, open_pool, pool_files
from daar.read.records import CHAT_TEMPLATE_DOC, Record, Rejection, RowError, to_record

__all__ = [
    "CHAT_TEMPLATE_DOC",
    "DatasetPool",
    "SUFFIXES",
    "Pool",
    "PoolError",
    "PoolSource",
    "Record",
    "Rejection",
    "RowError",
    "check_pool",
    "file_sha256",
    "open_pool",
    "pool_files",
    "read_pool",
    "to_record",
]
