"""The diffusion process, apart from any network: noise schedule and samplers (diffusers' schedulers),
the training loss, classifier-free guidance, and sampling a trained denoiser as a generator.

Parameterisation: **v-prediction** (Salimans & Ho 2022) on a cosine schedule of 1,000 steps. The
network predicts v = √ᾱ·ε − √(1 − ᾱ)·x₀. Why v and not ε: at the noisiest steps (ᾱ → 0) an
ε-prediction says nothing about the image and x₀ = (x − √(1 − ᾱ)ε)/√ᾱ amplifies its errors without
bound, which is exactly where a 20-step sampler takes its large first steps; v stays well scaled at
every noise level. Why not EDM's preconditioning: all three samplers the project offers (DDPM, DDIM,
DPM-Solver++) exist in diffusers for this discrete v-parameterisation, and EDM's continuous σ has no
DDIM there.
"""
