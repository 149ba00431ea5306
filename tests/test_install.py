"""The install leaves a GPU user's PaddlePaddle alone, and the import says what is missing."""
import importlib.metadata
import os
import subprocess
import sys
import tomllib

import pytest

import paddleprune

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_paddle_is_an_extra_not_a_hard_dependency():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        project = tomllib.load(f)["project"]
    assert not [d for d in project["dependencies"] if d.lower().startswith("paddlepaddle")]
    assert project["optional-dependencies"]["cpu"] == ["paddlepaddle>=3.3,<3.4"]
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        first_commands = f.read().split("```bash\n", 1)[1].split("```", 1)[0].splitlines()
    with open(os.path.join(ROOT, ".ci", "run"), encoding="utf-8") as f:
        ci = f.read()
    assert first_commands[0].startswith('pip install -e ".[cpu]" && paddleprune demo')
    assert first_commands[1].startswith('pip install -e ".[cpu,test]" && python -m pytest')
    assert 'pip install -q -e ".[cpu,test]"' in ci


def test_import_without_paddle_names_what_to_install():
    # a fresh interpreter that sees the repository but no site-packages (so no paddle wheel)
    code = (f"import sys; sys.path = [{ROOT!r}] + [p for p in sys.path if 'site-packages' not in p]; "
            "import paddleprune")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "ImportError: paddleprune needs PaddlePaddle, and none is installed" in proc.stderr
    assert 'pip install \\"paddleprune[cpu]\\"' not in proc.stderr
    assert 'pip install "paddleprune[cpu]"' in proc.stderr and "paddlepaddle-gpu==3.3" in proc.stderr


@pytest.mark.parametrize("dist, version, warns", [("paddlepaddle-gpu", "3.3.0", False), ("paddlepaddle-gpu", "2.6.2", True),
                                                  ("paddlepaddle", "3.4.0", True), ("paddlepaddle", "3.3.1", False)])
def test_version_check(monkeypatch, recwarn, dist, version, warns):
    def fake_version(name):
        if name != dist:
            raise importlib.metadata.PackageNotFoundError(name)
        return version
    monkeypatch.setattr(importlib.metadata, "version", fake_version)
    assert paddleprune.check_paddle() == version
    messages = [str(w.message) for w in recwarn]
    assert bool([m for m in messages if f"{dist} {version} is installed" in m]) == warns
