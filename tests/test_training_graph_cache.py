"""mindresnet.training.graph_cache: a run reuses its own compiled graphs, never another run's."""
import os
import subprocess
import sys

import pytest

from mindresnet.training import graph_cache
from mindresnet.training.metrics_log import read_metrics

from conftest import REPO, small_resnet, tiny_config


@pytest.fixture
def cache_on(monkeypatch, tmp_path):
    monkeypatch.setenv("MINDRESNET_GRAPH_CACHE", "1")
    monkeypatch.setenv("MINDRESNET_HOME", str(tmp_path / "home"))
    return tmp_path / "home" / "graphs"


def test_the_key_follows_the_config_the_network_the_sources_and_the_data(tiny_cifar, tmp_path, monkeypatch):
    net = small_resnet(num_classes=10)
    key = graph_cache.run_key(tiny_config(tiny_cifar, tmp_path / "a"), net, 1, 0)
    assert graph_cache.run_key(tiny_config(tiny_cifar, tmp_path / "b"), small_resnet(num_classes=10), 1, 0) == key
    others = [graph_cache.run_key(tiny_config(tiny_cifar, tmp_path / "a", batch_size=4), net, 1, 0),
              graph_cache.run_key(tiny_config(tiny_cifar, tmp_path / "a"), small_resnet(num_classes=9), 1, 0),
              graph_cache.run_key(tiny_config(tiny_cifar, tmp_path / "a"), net, 2, 1)]
    (tiny_cifar / "data_batch_6.bin").write_bytes(b"")  # another file in the data folder
    others.append(graph_cache.run_key(tiny_config(tiny_cifar, tmp_path / "a"), net, 1, 0))
    monkeypatch.setattr(graph_cache, "_sources_digest", lambda: "edited")
    others.append(graph_cache.run_key(tiny_config(tiny_cifar, tmp_path / "a"), net, 1, 0))
    assert len({key, *others}) == 6


def test_runs_that_could_compile_otherwise_do_not_use_it(tiny_cifar, tmp_path, monkeypatch, cache_on):
    config = tiny_config(tiny_cifar, tmp_path / "ckpt")
    assert graph_cache.why_not(config, [], "CPU") is None
    assert "callbacks" in graph_cache.why_not(config, [object()], "CPU")
    assert "GPU" in graph_cache.why_not(config, [], "GPU")
    assert "--class-weights" in graph_cache.why_not(tiny_config(tiny_cifar, tmp_path, class_weights="balanced"), [],
                                                    "CPU")
    monkeypatch.setenv("MS_COMPILER_CACHE_ENABLE", "1")
    assert "MindSpore's own" in graph_cache.why_not(config, [], "CPU")
    monkeypatch.delenv("MS_COMPILER_CACHE_ENABLE")
    monkeypatch.setenv("MINDRESNET_GRAPH_CACHE", "0")
    assert graph_cache.why_not(config, [], "CPU") == "MINDRESNET_GRAPH_CACHE=0"


def test_an_unfinished_folder_is_discarded_and_a_busy_one_left_alone(cache_on):
    folder = cache_on / "k"
    (folder / "rank_0" / "graph_cache").mkdir(parents=True)
    stale = folder / "rank_0" / "graph_cache" / "compile_cache_0.mindir"
    stale.write_bytes(b"half a graph")
    with pytest.raises(RuntimeError):
        with graph_cache.graph_cache("k", 0) as used:
            assert used == folder and not stale.exists()
            assert os.environ["MS_COMPILER_CACHE_PATH"] == str(folder)
            with graph_cache.graph_cache("k", 0) as second:
                assert second is None  # one process at a time
            raise RuntimeError("the run failed")
    assert "MS_COMPILER_CACHE_PATH" not in os.environ and not (folder / "rank_0.complete").exists()
    with graph_cache.graph_cache("k", 0):
        pass
    assert (folder / "rank_0.complete").exists()


@pytest.mark.slow
def test_a_second_run_reuses_the_graphs_and_trains_the_same(tiny_cifar, tmp_path, cache_on):
    """Through ``python -m`` (MindSpore took "-m" for the entry script there)."""
    args = [sys.executable, "-m", "mindresnet.train", "--device", "CPU", "--arch", "resnet18", "--stem", "cifar",
            "--pretrained", "false", "--data-dir", str(tiny_cifar), "--download", "false", "--epochs", "1",
            "--batch-size", "8", "--max-steps-per-epoch", "2"]
    runs = (("first", [], "saving the graphs"), ("second", [], "reusing the compiled graphs"),
            ("smaller", ["--batch-size", "4"], "saving the graphs"))
    for name, more, expected in runs:
        result = subprocess.run([*args, *more, "--ckpt-dir", str(tmp_path / name)], cwd=REPO, capture_output=True,
                                text=True, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
        assert expected in result.stderr
    losses = {name: [row["loss"] for row in read_metrics(tmp_path / name / "metrics.csv")] for name, _, _ in runs}
    assert losses["second"] == losses["first"] != losses["smaller"]


def test_an_unwritable_cache_folder_compiles_without_it(cache_on):
    cache_on.parent.mkdir(parents=True)
    cache_on.write_text("a file where the folder should be")
    with graph_cache.graph_cache("k", 0) as used:
        assert used is None and "MS_COMPILER_CACHE_ENABLE" not in os.environ
