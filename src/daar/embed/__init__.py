"""Features of rows as the prober sees them: e(x) from the embedding layer, f(x) from the clip layer."""

from daar.embed.batching import length_batches
from daar.embed.features import FeatureExtractor, Features, load_cached

__all__ = ["FeatureExtractor", "Features", "length_batches", "load_cached"]
