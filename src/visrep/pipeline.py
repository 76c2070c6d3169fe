"""The main job, end to end, from one config (grows stage by stage)."""

from __future__ import annotations

from visrep.data.inspect import format_summary, summarize
from visrep.data.manifest import write_manifest
from visrep.data.prepare import prepare_data
from visrep.runs import create_run
from visrep.seeding import seed_everything, set_deterministic


def run_demo(cfg) -> int:
    seed_everything(cfg.run.seed)
    set_deterministic(cfg.run.deterministic)
    data = prepare_data(cfg.data)
    run = create_run(cfg, "demo")
    write_manifest(data.manifest, run.file("manifest.json"))
    run.write_json("normalization.json", data.normalization.to_dict())
    run.logger.info(format_summary(summarize(data)))
    images, labels = next(iter(data.loader("train", cfg.data.batch_size, train=True, augment=cfg.data.augment)))
    run.logger.info("first training batch: images %s %s, labels %s", tuple(images.shape), images.dtype,
                    tuple(labels.shape))
    return 0
