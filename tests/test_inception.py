"""Inception FID from a local weights file, tested with a random-weights stand-in of the real file's shape.

Nothing is downloaded: the stand-in is torch-fidelity's FID Inception built without loading
weights, its random state dict saved the way ``pt_inception-2015-12-05-6726825d.pth`` is.
"""

import json

import numpy as np
import pytest
import torch

pytest.importorskip("torch_fidelity")
from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3  # noqa: E402

from visrep.cli import main  # noqa: E402
from visrep.errors import UserError  # noqa: E402
from visrep.evaluation.inception import inception_features, inception_network, inception_scores  # noqa: E402


@pytest.fixture(scope="module")
def stand_in_weights(tmp_path_factory):
    """A .pth with the real file's keys and shapes, random values (torch's default initialisation)."""
    path = tmp_path_factory.mktemp("inception") / "pt_inception-stand-in.pth"
    original = FeatureExtractorInceptionV3.load_state_dict
    FeatureExtractorInceptionV3.load_state_dict = lambda self, state, *args, **kwargs: None
    try:
        torch.save({}, path)
        torch.manual_seed(0)
        network = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(path))
    finally:
        FeatureExtractorInceptionV3.load_state_dict = original
    torch.save(network.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def network(stand_in_weights):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny batches: more threads only add start-up and spinning
    yield inception_network(stand_in_weights)
    torch.set_num_threads(threads)


def test_stand_in_loads_and_gives_2048_features_for_gray_and_colour(network):
    colour = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    gray = torch.randint(0, 256, (2, 1, 28, 28), dtype=torch.uint8)
    for images in (colour, gray):
        features = inception_features(network, images)
        assert features.shape == (len(images), 2048) and np.isfinite(features).all()
    assert not np.allclose(inception_features(network, colour)[0], inception_features(network, colour)[1])


def test_inception_fid_is_zero_for_a_set_with_itself_and_positive_otherwise(network):
    real = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8)
    other = (real.float() * 0.3).to(torch.uint8)
    same, different = inception_scores(network, real, real), inception_scores(network, real, other)
    assert abs(same["fid"]) < 1e-6 and different["fid"] > 0
    assert set(same["kid"]) == {"value", "std_error", "n_real", "n_fake"}


def test_missing_or_unsafe_weights_are_one_clear_error(tmp_path):
    with pytest.raises(UserError, match="never downloaded"):
        inception_network(tmp_path / "absent.pth")
    (tmp_path / "garbage.pth").write_bytes(b"\x80\x04 not a state dict")
    with pytest.raises(UserError, match="not a plain PyTorch state dict"):
        inception_network(tmp_path / "garbage.pth")
    torch.save({"layer.weight": torch.zeros(2)}, tmp_path / "wrong.pth")
    with pytest.raises(UserError, match="cannot load Inception weights"):
        inception_network(tmp_path / "wrong.pth")


def test_evaluate_generated_adds_the_inception_column(tmp_path, stand_in_weights, tiny_trained_run, capsys):
    from visrep.data.prepare import prepare_data
    from visrep.evaluation.evaluator import load_evaluator

    data = prepare_data(load_evaluator(tiny_trained_run).cfg.data, progress=False)
    test = data.splits["test"]
    np.savez(tmp_path / "fake.npz", images=test.uint8_batch(np.arange(8)).numpy(), labels=test.labels.numpy()[:8])
    code = main(["evaluate", "generated", "--evaluator", str(tiny_trained_run), "--fake", str(tmp_path / "fake.npz"),
                 "-n", "8", "--no-cas", "--name", "inc", f"run.root={tmp_path}/runs", "generative.floor=false", "generative.cache=false",
                 f"generative.inception_weights={stand_in_weights}"])
    assert code == 0, capsys.readouterr().err
    metrics = json.loads((tmp_path / "runs" / "inc" / "metrics.json").read_text())
    assert metrics["inception"]["fid"] >= 0 and "Inception" in (tmp_path / "runs" / "inc" / "report.md").read_text()
