"""The README's Python API example, run as written: on two real clips instead of all of them, and
with the small test model in place of a (randomly initialised) ViT-B-32, which would cost the suite
seconds of encoding and nothing in coverage."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
from conftest import ROOT


def readme_python_example() -> str:
    """The first code block of the README's "Python API" section (``VideoIndex`` end to end)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert blocks and "VideoIndex.build(" in blocks[0], "the Python API section should open with its example"
    return blocks[0]


def test_python_api_example_runs_as_written(
    shared_videos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code = readme_python_example()
    assert code.count('model="ViT-B-32"') == 1
    code = code.replace('model="ViT-B-32"', 'model="vadindex-test"')
    # The example's relative paths, laid out in a scratch folder: "../shared/data/videos" with two
    # real clips, "more_videos/" with a third; "indexes/samples" is created by the example.
    work = tmp_path / "repo"
    clips = tmp_path / "shared" / "data" / "videos"
    for rel, target in (("fight/fi010.mp4", clips / "fight/fi010.mp4"),
                        ("nofight/nofi001.mp4", clips / "nofight/nofi001.mp4"),
                        ("nofight/nofi090.mp4", work / "more_videos" / "nofi090.mp4")):  # fmt: skip
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(shared_videos / rel, target)
    assert '"../shared/data/videos"' in code and '"more_videos/"' in code and '"indexes/samples"' in code
    monkeypatch.chdir(work)
    namespace: dict = {}
    exec(compile(code, "README.md (Python API)", "exec"), namespace)  # noqa: S102 - the documented example

    idx, hits, result = namespace["idx"], namespace["hits"], namespace["result"]
    assert idx.last_build.videos_added == 2 and idx.last_build.failures == ()
    assert "'videos_added': 2" in capsys.readouterr().out  # print(idx.last_build.to_dict())
    assert isinstance(hits, pd.DataFrame) and len(hits) == 5
    assert list(hits.columns[:5]) == ["rank", "score", "video", "start", "end"]  # as the comment says
    assert isinstance(result.videos, pd.DataFrame) and len(result.videos) == 2
    first_two = idx.videos[idx.videos["video"] != "nofi090.mp4"]["n_segments"].sum()  # detect ran before add
    assert isinstance(result.segments, pd.DataFrame) and len(result.segments) == first_two
    assert result.metrics is None  # no labels in this index
    assert result.settings["rule"] == "balanced" and result.settings["video_ratio"] == 0.2
    # idx.add encoded only the new video.
    assert idx.manifest.n_videos == 3
    assert sorted(idx.videos["video"]) == ["fight/fi010.mp4", "nofi090.mp4", "nofight/nofi001.mp4"]
    assert idx.manifest.model == "vadindex-test" and idx.manifest.pretrained == "random"
