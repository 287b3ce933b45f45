"""`make demo` / `make test` get Fashion-MNIST the way CI does (scripts/get-fashion-mnist.sh).

What we found: on a fresh Debian machine without internet, `make demo` (the README's first command) failed:
its data step only looked for the Debian package or downloaded, and ended in an OSError traceback; `.ci/run`
installed `dataset-fashion-mnist` with apt, `make demo` did not. The script runs here against stand-ins for
apt-get, sudo and robustdml that record what they are asked to do.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "get-fashion-mnist.sh"


def _stub(folder: Path, name: str, body: str) -> None:
    path = folder / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)


@pytest.fixture
def machine(tmp_path):
    """A fake machine: ``state`` files say what is installed / reachable; ``log`` records every command."""
    bin_dir, state = tmp_path / "bin", tmp_path / "state"
    bin_dir.mkdir()
    state.mkdir()
    log = tmp_path / "log"
    _stub(bin_dir, "robustdml", f"""echo "robustdml $*" >> {log}
if [ "$3" = "--no-download" ]; then
  [ -e {state}/installed ] || [ -e {state}/downloaded ] && exit 0
  echo "error: Fashion-MNIST not found" >&2; exit 2
fi
[ -e {state}/online ] && touch {state}/downloaded && exit 0
echo "error: could not download train-images-idx3-ubyte.gz (Connection refused)" >&2; exit 1
""")
    _stub(bin_dir, "apt-get", f"""echo "apt-get $*" >> {log}
[ "$1" = install ] && [ -e {state}/apt-has-package ] && touch {state}/installed && exit 0
exit 100
""")
    _stub(bin_dir, "sudo", f"""echo "sudo $*" >> {log}
exit 1
""")

    def run(uid: int = 0, apt: bool = True):
        _stub(bin_dir, "id", f"echo {uid}\n")
        if not apt:
            (bin_dir / "apt-get").unlink()
        env = {**os.environ, "PATH": f"{bin_dir}:/usr/bin:/bin"}
        result = subprocess.run(["sh", str(SCRIPT), str(bin_dir / "robustdml")], capture_output=True, text=True,
                                env=env, timeout=60)
        calls = log.read_text().splitlines() if log.exists() else []
        return result, calls

    return state, run


def test_data_already_on_disk_needs_nothing(machine):
    state, run = machine
    (state / "installed").touch()
    result, calls = run()
    assert result.returncode == 0 and calls == ["robustdml data fashion-mnist --no-download"]


def test_the_debian_package_is_installed_when_apt_can(machine):
    state, run = machine
    (state / "apt-has-package").touch()
    result, calls = run(uid=0)
    assert result.returncode == 0
    assert calls == ["robustdml data fashion-mnist --no-download", "apt-get install -y -q dataset-fashion-mnist",
                     "robustdml data fashion-mnist --no-download"]


def test_without_apt_rights_it_downloads(machine):
    state, run = machine
    (state / "online").touch()
    result, calls = run(uid=1000)
    assert result.returncode == 0
    assert not any(call.startswith("apt-get") for call in calls)
    assert calls[-1] == "robustdml data fashion-mnist"


def test_offline_without_the_package_it_stops_with_one_clear_line(machine):
    _, run = machine
    result, calls = run(uid=0)
    assert result.returncode == 1
    assert "apt-get update -q" in calls and calls[-1] == "robustdml data fashion-mnist"
    errors = [line for line in result.stderr.splitlines() if line.startswith("error")]
    assert len(errors) == 1 and errors[0] == result.stderr.strip().splitlines()[-1]
    assert "sudo apt-get install dataset-fashion-mnist" in errors[0] and "./data/fashion-mnist" in errors[0]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("target,after", [("demo", "benchmark defenses"), ("test", "-m pytest -q")])
def test_make_demo_and_test_run_the_data_step_first(target, after, tmp_path):
    result = subprocess.run(["make", "-n", target, f"VENV={tmp_path / 'venv'}"], cwd=REPO, capture_output=True,
                            text=True, timeout=60)
    lines = result.stdout.splitlines()
    data = next(i for i, line in enumerate(lines) if "scripts/get-fashion-mnist.sh" in line)
    assert data < next(i for i, line in enumerate(lines) if after in line)


@pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz").is_file(),
                    reason="needs Debian's dataset-fashion-mnist")
def test_the_real_script_finds_debians_copy(tmp_path):
    robustdml = f"{sys.executable} -m robustdml.cli"  # the script splits it into words
    result = subprocess.run(["sh", str(SCRIPT), robustdml], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
