"""Getting a model: the catalog, references, downloads, cache entries, embedded models,
conversion, retrained folders, and the resolver that turns `--model` into a Recipe."""
