"""Embedding stage: extraction, storage, statistics, analysis, API and bad input (tiny digits run, seconds)."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

from visrep.cli import main
from visrep.config import ClassifierConfig, EmbedConfig, load_config
from visrep.data.prepare import prepare_data
from visrep.embeddings import (analyse_embeddings, embed_classifier_run, embed_images, load_bank, load_embeddings,
                               nearest_neighbours)
from visrep.embeddings.analysis import dimensionality, knn_accuracy, linear_probe, silhouette
from visrep.representations.extract import extract_features
from visrep.representations.pooling import pool_features
from visrep.errors import UserError
from visrep.inference.encoder import FrozenEncoder
from visrep.inference.loading import load_classifier
from visrep.training.classifier import train_classifier

REPO = Path(__file__).resolve().parents[1]
FAST_ANALYSIS = ["analysis.map_points=120", "analysis.sample_points=400", "analysis.retrieval_queries=4",
                 "analysis.retrieval_k=3", "embed.kmeans_clusters=12"]


def embed_cfg(*overrides):
    return load_config(overrides=[*FAST_ANALYSIS, *overrides], schema=EmbedConfig)


@pytest.fixture(scope="module")
def classifier_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("embed")
    # Training determinism is not under test here, and CUDA has no deterministic max-pool backward.
    cfg = load_config(REPO / "configs" / "tiny.yaml", [f"run.root={root}/runs", f"data.cache_dir={root}/cache",
                                                       "run.name=clf", "train.epochs=2", "run.deterministic=false"],
                      schema=ClassifierConfig)
    return train_classifier(cfg, progress=False)


@pytest.fixture(scope="module")
def embedded(classifier_run):
    """Every layer extracted; analysis of stem and penultimate only (to stay fast)."""
    out = embed_classifier_run(classifier_run, embed_cfg("embed.layers=[all]", "analysis.enabled=false"),
                               progress=False)
    analyse_embeddings(out, embed_cfg().analysis, ["stem", "penultimate"])
    return out


# ---------------------------------------------------------------------------------------------- extraction

def test_files_carry_labels_ids_and_provenance(classifier_run, embedded):
    manifest = json.loads((classifier_run / "manifest.json").read_text())
    for split in ("train", "val", "test"):
        expected = [item for item in manifest["items"] if item["split"] == split]
        emb = load_embeddings(classifier_run, "stage2", split)
        assert emb.ids == [item["id"] for item in expected]
        assert emb.labels.tolist() == [item["label"] for item in expected]
        assert emb.features.dtype == torch.float32 and emb.features.shape == (len(expected), 32)
    with safe_open(str(embedded / "stage2" / "train.safetensors"), "pt") as handle:
        meta = handle.metadata()
    assert meta["layer"] == "stage2" and meta["split"] == "train" and meta["pooling"] == "avg"
    assert meta["classifier_run_id"] == "clf" and meta["manifest_hash"] == manifest["hash"]
    assert json.loads(meta["class_names"]) == manifest["classes"]
    assert json.loads(meta["layer_output_shape"]) == [32, 2, 2]  # 8 px → 4 → 2 → 1 in fastcnn


def test_same_inputs_give_identical_embeddings(classifier_run, tmp_path):
    outs = [embed_classifier_run(classifier_run, embed_cfg(f"embed.out={tmp_path}/{name}", "embed.layers=[stem,penultimate]",
                                                           "analysis.enabled=false"), progress=False)
            for name in ("a", "b")]
    for layer in ("stem", "penultimate"):
        for split in ("train", "test"):
            first, second = (load_embeddings(out, layer, split) for out in outs)
            assert torch.equal(first.features, second.features), (layer, split)  # bit for bit
            assert torch.equal(first.labels, second.labels) and first.ids == second.ids
            assert first.metadata == second.metadata
        first, second = (load_bank(out, layer) for out in outs)
        assert torch.equal(first.centres, second.centres) and torch.equal(first.class_cholesky, second.class_cholesky)


def test_extraction_is_deterministic_in_memory(classifier_run):
    model, cfg = load_classifier(classifier_run)
    data = prepare_data(cfg.data, progress=False)
    runs = [extract_features(model, data.loader("val", 64), ["stage1", "penultimate"], progress=False) for _ in range(2)]
    for layer in ("stage1", "penultimate"):
        assert torch.equal(runs[0].features[layer], runs[1].features[layer])


def test_pooling_modes_and_l2():
    maps = torch.randn(4, 6, 3, 5)
    assert pool_features(maps, "avg").shape == (4, 6)
    assert torch.allclose(pool_features(maps, "max"), maps.amax(dim=(2, 3)))
    assert pool_features(maps, "flatten").shape == (4, 90)
    assert pool_features(maps, "spatial").shape == (4, 6, 3, 5)
    assert torch.allclose(pool_features(maps, "spatial", l2_normalize=True).flatten(1).norm(dim=1), torch.ones(4))
    vectors = torch.randn(4, 7)
    assert torch.equal(pool_features(vectors, "avg"), vectors)  # (N, D) layers pass through


def test_spatial_pooling_keeps_the_map(classifier_run, tmp_path):
    cfg = embed_cfg(f"embed.out={tmp_path}/sp", "embed.layers=[stage1]", "embed.pooling=spatial", "embed.splits=[train]",
                    "embed.l2_normalize=true", "analysis.enabled=false")
    out = embed_classifier_run(classifier_run, cfg, progress=False)
    emb = load_embeddings(out, "stage1", "train")
    assert emb.features.shape[1:] == (16, 4, 4) and emb.metadata["l2_normalized"] is True
    assert torch.allclose(emb.flat().norm(dim=1), torch.ones(len(emb)), atol=1e-5)
    with pytest.raises(UserError, match="no condition bank for layer stage1"):
        load_bank(out, "stage1")  # spatial maps are not what the generators condition on: no bank beside them


# ---------------------------------------------------------------------------------------------- statistics

def test_stored_bank_is_the_one_a_generator_fits(embedded):
    """The stage's bank beside the penultimate embeddings is what ConditionBank.fit gives on the unit-length train
    embeddings (the generators' conditions) with the stage's k-means settings, tensor for tensor."""
    from visrep.representations.bank import ConditionBank

    bank = load_bank(embedded, "penultimate")
    train = load_embeddings(embedded, "penultimate", "train")
    unit = torch.nn.functional.normalize(train.flat(), dim=1)
    refit = ConditionBank.fit(unit, train.labels, 10, clusters=12, seed=0)
    for name in ConditionBank.__dataclass_fields__:
        assert torch.equal(getattr(bank, name), getattr(refit, name)), name
    assert torch.allclose(bank.class_means[3], unit[train.labels == 3].mean(0), atol=1e-6)
    assert bank.centres.shape == (12, 32) and int(bank.centre_counts.sum()) == len(train)
    draws, labels = bank.sample(5, "gaussian", generator=torch.Generator().manual_seed(0))
    assert torch.allclose(draws.norm(dim=1), torch.ones(5), atol=1e-5) and labels.shape == (5,)


# ------------------------------------------------------------------------------------------------ analysis

def separable(n_per_class=30, classes=3, dim=8, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dim)) * 10
    labels = np.repeat(np.arange(classes), n_per_class)
    return (centres[labels] + rng.normal(size=(len(labels), dim))).astype(np.float32), labels


def test_measures_on_well_separated_classes():
    (x, y), (xt, yt) = separable(), separable(seed=0)
    assert knn_accuracy(x, y, xt, yt, k=5) == 1.0
    probe = linear_probe(x, y, {"test": (xt, yt)})
    assert probe["test"] == 1.0 and probe["converged"]
    assert silhouette(x, y) > 0.5
    low_rank = np.random.default_rng(1).normal(size=(100, 3)) @ np.random.default_rng(2).normal(size=(3, 20))
    assert dimensionality(low_rank)["pca_dims_95"] <= 3


def test_nearest_neighbours_match_brute_force():
    rng = np.random.default_rng(0)
    bank, queries = rng.normal(size=(50, 6)), rng.normal(size=(7, 6))
    indices, similarities = nearest_neighbours(torch.from_numpy(queries), torch.from_numpy(bank), k=4)
    unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)  # noqa: E731
    cosine = unit(queries) @ unit(bank).T
    assert np.array_equal(indices.numpy(), np.argsort(-cosine, axis=1)[:, :4])
    assert np.allclose(similarities.numpy(), np.sort(cosine, axis=1)[:, ::-1][:, :4], atol=1e-5)
    own, _ = nearest_neighbours(torch.from_numpy(bank), torch.from_numpy(bank), k=3, exclude_self=True)
    assert not (own == torch.arange(50).unsqueeze(1)).any()
    expected = unit(bank) @ unit(bank).T
    np.fill_diagonal(expected, -np.inf)
    assert np.array_equal(own.numpy(), np.argsort(-expected, axis=1)[:, :3])
    chunked, _ = nearest_neighbours(torch.from_numpy(bank), torch.from_numpy(bank), k=3, exclude_self=True,
                                    bank_chunk=16)  # each row's own match falls in one of four chunks
    assert torch.equal(chunked, own)


def test_analysis_writes_table_maps_and_retrieval(embedded):
    table = json.loads((embedded / "analysis.json").read_text())
    assert [row["layer"] for row in table["layers"]] == ["stem", "penultimate"]
    for row in table["layers"]:
        assert set(row["knn"]) == set(row["probe"]) == {"val", "test"}
        assert 0 <= row["probe"]["test"] <= 1 and row["pca_dims_95"] >= 1
        assert (embedded / row["layer"] / "map.png").stat().st_size > 1000
        assert (embedded / row["layer"] / "retrieval.png").is_file()
    markdown = (embedded / "analysis.md").read_text()
    assert "| penultimate |" in markdown and "Classifier's own accuracy" in markdown


def test_cli_embed_and_evaluate_embeddings(classifier_run, tmp_path, capsys):
    out = tmp_path / "cli"
    argv = ["embed", str(classifier_run), "--layers", "stage3", "--splits", "train,test", "--out", str(out),
            *FAST_ANALYSIS]
    assert main(argv) == 0
    assert "| stage3 |" in capsys.readouterr().out
    assert main(["evaluate", "embeddings", str(out), "analysis.knn_k=3"]) == 0
    assert "kNN@3" in capsys.readouterr().out


# --------------------------------------------------------------------------------------------- API + input

def test_embed_images_reproduces_stored_embeddings(classifier_run, embedded):
    stored = load_embeddings(classifier_run, "penultimate", "test")
    _, cfg = load_classifier(classifier_run)
    images = prepare_data(cfg.data, progress=False).splits["test"].uint8_batch(np.arange(len(stored)))
    fresh = embed_images(classifier_run, images, "penultimate")  # default batch size = the extraction's (512)
    assert torch.equal(fresh, stored.features)
    both = embed_images(FrozenEncoder.from_run(classifier_run, "best"), images[:5].numpy(), ["stem", "penultimate"])
    assert both["stem"].shape == (5, 18) and torch.allclose(both["penultimate"], stored.features[:5], atol=0.05)


def test_embed_images_refuses_or_converts_wrong_shapes(classifier_run):
    encoder = FrozenEncoder.from_run(classifier_run, "best")
    rgb = torch.randint(0, 256, (3, 3, 20, 24), dtype=torch.uint8)
    with pytest.raises(UserError, match=r"expects images of shape \(N, 1, 8, 8\).*convert=True"):
        embed_images(encoder, rgb)
    assert embed_images(encoder, rgb, convert=True).shape == (3, 32)
    assert embed_images(encoder, rgb.permute(0, 2, 3, 1).numpy(), convert=True).shape == (3, 32)  # NHWC arrays
    with pytest.raises(UserError, match="unnormalised"):
        embed_images(encoder, torch.randn(2, 1, 8, 8) * 3)
    with pytest.raises(UserError, match="unknown layer 'nope'.*stem, stage1"):
        embed_images(encoder, torch.zeros(1, 1, 8, 8), "nope")


# ----------------------------------------------------------------------------------------------- bad input

def test_unknown_layer_lists_valid_names(classifier_run, capsys):
    assert main(["embed", str(classifier_run), "--layers", "stage9", "--no-analysis"]) == 2
    err = capsys.readouterr().err
    assert "unknown layer 'stage9'" in err and "stem, stage1, stage2, stage3, penultimate" in err


def test_manifest_mismatch_is_a_clear_error(classifier_run, embedded, tmp_path):
    copy = tmp_path / "other"
    shutil.copytree(classifier_run, copy, ignore=shutil.ignore_patterns("embeddings"))
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["hash"] = "f" * 64  # as if the run had been trained on other data
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(UserError, match="data mismatch"):
        embed_classifier_run(copy, embed_cfg("analysis.enabled=false"), progress=False)
    with pytest.raises(UserError, match="data mismatch"):
        load_embeddings(embedded, "penultimate", manifest_hash="0" * 64)


def test_existing_layers_are_not_replaced_and_missing_ones_are_named(classifier_run, embedded, capsys):
    assert main(["embed", str(classifier_run), "--layers", "stem", "--no-analysis"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    with pytest.raises(UserError, match="stored splits: train, val, test|stored layers"):
        load_embeddings(embedded, "penultimate", "extra")
    with pytest.raises(UserError, match="stored layers: stem, stage1, stage2, stage3, penultimate"):
        load_embeddings(embedded, "head")


def test_retrieval_grid_has_headers_no_gap_and_frames_wrong_class_neighbours(tmp_path):
    from PIL import Image

    from visrep.embeddings.plots import QUERY_FRAME, WRONG_FRAME, save_retrieval_grid

    queries = torch.full((2, 1, 8, 8), 128, dtype=torch.uint8)
    neighbours = torch.full((2, 3, 1, 8, 8), 200, dtype=torch.uint8)
    correct = torch.tensor([[True, False, True], [True, True, True]])
    grid = Image.open(save_retrieval_grid(queries, neighbours, ["a: 2/3", "b: 3/3"], tmp_path / "r.png", correct))
    pixels = np.asarray(grid.convert("RGB")).reshape(-1, 3)
    colours = {tuple(p) for p in pixels}
    assert QUERY_FRAME in colours and WRONG_FRAME in colours
    # one query column + 3 neighbours, no blank column between them: 4 cells of 32 px (enlarged) per row
    assert grid.width < 4 * 40 + 60
