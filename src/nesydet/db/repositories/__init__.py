"""Every query lives in a repository module; repositories flush, never commit."""
