"""`python -m imgtool.beam classify|features ...` - the same commands as `imgtool beam`."""

from imgtool.beam.cli import main

main()
