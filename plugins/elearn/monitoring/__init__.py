"""Watching models after they ship: drift of new data against a model's training snapshot, and
live quality once the labels of scored rows arrive."""
