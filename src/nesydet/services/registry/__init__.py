"""The model and rules registry: register, read, change and resolve versioned assets."""
