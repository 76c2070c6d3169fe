"""The classifier's representations as every later stage reuses them.

The embeddings stage writes them and the generators read them, so the code both use sits here,
below both: the on-disk embeddings (:mod:`.store`), pooling a layer's output to a vector
(:mod:`.pooling`), the unit-length embedding conditions and their neighbourhoods
(:mod:`.conditions`), the condition bank fitted on them (:mod:`.conditions`), the one
nearest-neighbour search (:mod:`.neighbours`), and the training split's conditions a generator
reads from the embeddings stage when it stored them (:mod:`.train_embeddings`).
"""
