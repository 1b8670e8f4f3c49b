"""report stage of daar."""
