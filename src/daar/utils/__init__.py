"""Small shared helpers: atomic cached writes, progress and timing."""
