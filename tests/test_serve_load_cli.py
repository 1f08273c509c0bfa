"""bench/serve_load.py's command line: a malformed --variant-env is a usage error naming the flag, before any server
starts."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_a_variant_setting_without_equals_is_a_usage_error_naming_the_flag(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "serve_load.py"), "--variant-env", "TF_NUM_THREADS",
                           "--out", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "--variant-env" in done.stderr and "KEY=VALUE" in done.stderr and "Traceback" not in done.stderr
    assert not any(tmp_path.iterdir())


def test_variant_settings_keep_everything_after_the_first_equals():
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        from serve_load import environment_setting
    finally:
        sys.path.remove(str(ROOT / "bench"))
    assert environment_setting("EXTRA_OPTS=a=b") == ("EXTRA_OPTS", "a=b")
    assert environment_setting("EMPTY=") == ("EMPTY", "")


def test_an_unknown_model_is_a_usage_error_naming_the_flag(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "serve_load.py"), "--model", "no-such-model",
                           "--out", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "--model" in done.stderr and "no-such-model" in done.stderr and "Traceback" not in done.stderr
    assert not any(tmp_path.iterdir())
