"""Small cross-stage helpers: atomic writes, device and precision choice, seeding."""
