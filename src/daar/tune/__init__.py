"""tune stage of daar."""
