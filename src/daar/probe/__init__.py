"""probe stage of daar."""
