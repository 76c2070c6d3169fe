"""The main job from one config: data → classifier → embeddings → evaluator → GAN → diffusion →
generative evaluation → report, one sub-folder per stage, finished stages skipped on a re-run."""

from visrep.pipeline.runner import run_pipeline

__all__ = ["run_pipeline"]
