"""One ``visrep sample`` request as the sampling code takes it: which images (the plan), the sampling
settings that override a diffusion run's own, and the record of the settings the images were made with.

The CLI only maps its flags onto :class:`SampleRequest`; everything the request means is here.
"""

from __future__ import annotations

from dataclasses import dataclass

from visrep.generate import sample
from visrep.generate.generator_run import GeneratorRun
from visrep.generate.sample import SamplePlan


@dataclass(frozen=True)
class SampleRequest:
    n: int  # images, or an interpolation's steps
    seed: int = 0
    class_: str | None = None  # a class name or index
    like: str | None = None  # an image path: variations of it
    interpolate: tuple[str, str] | None = None  # two image paths
    # a diffusion run's sampling, each None to keep the run's own
    solver: str | None = None  # ddpm | ddim | dpm++
    steps: int | None = None
    guidance: float | None = None
    guidance_interval: tuple[float, float] | None = None
    guide: str | None = None  # a guide run: classifier guidance
    classifier_scale: float | None = None

    def check(self) -> None:
        """One error line for a count or a number no sampler can use (before any run is loaded)."""
        sample.check_count(self.n)
        if self.interpolate:
            sample.check_interpolation_steps(self.n)
        sample.check_finite({"--guidance": self.guidance, "--guidance-interval": self.guidance_interval,
                             "--classifier-scale": self.classifier_scale})

    def sampling_overrides(self) -> dict:
        """What :func:`visrep.generate.generator_run.load_generator_run` overrides in a diffusion run."""
        return {"solver": self.solver, "steps": self.steps, "guidance": self.guidance,
                "guidance_interval": self.guidance_interval, "guide": self.guide,
                "classifier_scale": self.classifier_scale}

    def plan(self, run: GeneratorRun) -> SamplePlan:
        if self.class_ is not None:
            return sample.plan_class(run, self.class_, self.n, self.seed)
        if self.like:
            return sample.plan_like(run, self.like, self.n, self.seed)
        if self.interpolate:
            return sample.plan_interpolation(run, *self.interpolate, self.n, self.seed)
        return sample.plan_unconditional(run, self.n, self.seed)


def sampling_used(run: GeneratorRun) -> dict | None:
    """A diffusion run's sampling settings as its images were made (None for a GAN, which has none)."""
    options = getattr(run.generator, "options", None)
    if options is None:
        return None
    return {"solver": options.solver, "steps": options.steps, "guidance": options.guidance,
            "guidance_interval": list(options.guidance_interval), "classifier_scale": options.classifier_scale}
