"""bench/serve_load.py's command line: a malformed --variant-env or an unknown --model is a usage error naming the
flag, before any server starts."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("flags, named", [(["--variant-env", "TF_NUM_THREADS"], ["--variant-env", "KEY=VALUE"]),
                                           (["--model", "no-such-model"], ["--model", "no-such-model"])])
def test_a_bad_flag_is_a_usage_error_naming_it_before_any_server_starts(tmp_path, flags, named):
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "serve_load.py"), *flags, "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert all(text in done.stderr for text in named) and "Traceback" not in done.stderr
    assert not any(tmp_path.iterdir())


def test_variant_settings_keep_everything_after_the_first_equals():
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        from serve_load import environment_setting
    finally:
        sys.path.remove(str(ROOT / "bench"))
    assert environment_setting("EXTRA_OPTS=a=b") == ("EXTRA_OPTS", "a=b")
    assert environment_setting("EMPTY=") == ("EMPTY", "")
