"""The classifier's representations as every later stage reuses them.

The embeddings stage writes them and the generators read them, so the code both use sits here,
below both: the on-disk embeddings (:mod:`.store`), their extraction (:mod:`.extract`), pooling a
layer's output to a vector (:mod:`.pooling`), new images' embeddings (:mod:`.embed`, inputs in
:mod:`.inputs`), the differentiable embedding condition and kNN neighbourhoods (:mod:`.conditions`),
the condition bank fitted on them (:mod:`.bank`), RCG's learned embedding sampler
(:mod:`.learned_sampler`, on the diffusion stage's noise schedule), the one nearest-neighbour search (:mod:`.neighbours`), the rule that picks
the layer (:mod:`.layer_choice`), and the training split's conditions a generator reads from the
embeddings stage when it stored them (:mod:`.train_embeddings`).
"""
