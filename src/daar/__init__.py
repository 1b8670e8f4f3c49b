"""daar: Diversity as a Reward data selection for LLM fine-tuning."""

import os

# On CPUs with bf16 units the prober runs in bf16 (daar.models.prober_dtype), through oneDNN. Its
# two caches of compiled kernels (ideep's LRU_CACHE_CAPACITY, oneDNN's primitive cache) keep up to
# 1,024 entries, one per new matrix shape, and length-bucketed batches have a new shape almost every
# time: the feature pass of a SmolLM2-shaped prober grew by 375 MB instead of 208 MB in fp32
# (limit 223 MB, benchmarks/full_pool.py --memory-only). With 16 entries each it grew by 168-170 MB
# and ran no slower. They are read at the first matrix product, so setting them here is in time
# even after `import torch`; a value the user set is kept.
os.environ.setdefault("LRU_CACHE_CAPACITY", "16")
os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "16")

__version__ = "0.1.0"
