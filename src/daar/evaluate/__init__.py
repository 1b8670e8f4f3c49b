"""evaluate stage of daar."""
