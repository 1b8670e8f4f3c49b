"""reward stage of daar."""
