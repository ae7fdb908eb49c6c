"""Source adapters: each module's `load(PrepareConfig) -> LoadedData` reads one format."""
