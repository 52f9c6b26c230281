"""The model catalog (catalog.json), shipped inside the wheel as `imgtool.models`."""
