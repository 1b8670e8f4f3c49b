"""select stage of daar."""
