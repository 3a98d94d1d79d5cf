"""The deploy engine: git, build, transport (ssh), release (remote layout), runner."""
