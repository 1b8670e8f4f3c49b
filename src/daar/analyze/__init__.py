"""analyze stage of daar."""
