"""What the tests share: generated models, loopback servers, corpora, golden files."""
