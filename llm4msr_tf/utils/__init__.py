"""Small shared helpers: logging, atomic output, typed configs."""
