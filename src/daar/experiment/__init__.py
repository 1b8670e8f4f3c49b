"""experiment stage of daar."""
