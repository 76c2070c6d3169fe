"""``visrep doctor``: what a user needs to know about this machine before a long run.

Prints the CPU flags that decide speed, what ``precision: auto`` and the thread policy pick here
and why, torch's build, a measured training throughput of the default classifier in fp32 and bf16
(about 5 s), and a time for every shipped config on this machine: classifiers by FLOPs scaled from
the measurement (classifier_cost), generators by timing a few of their own steps (generator_cost),
pipelines as the sum of their stages (pipeline_cost).
"""

from visrep.doctor.classifier_cost import Throughput, estimate_config, forward_flops, measure_throughput
from visrep.doctor.report import estimate_line, report

__all__ = ["Throughput", "estimate_config", "estimate_line", "forward_flops", "measure_throughput", "report"]
