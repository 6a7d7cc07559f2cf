"""`python -m bench.deps`: would the newest releases of our direct dependencies still pass the tests?

Builds a throw-away virtual environment, installs the newest release of every package named in
`requirements.txt` (torch stays at its pin: the CPU build a new release would replace with a CUDA
one), runs the test suite there, and prints which packages moved and which tests broke. An upgrade
is then a measured step: move the pins in `requirements.txt` to the versions printed here once the
broken tests are fixed (or the upgrade is refused with a message, as prefix tuning is on transformers
releases whose BERT no longer takes `past_key_values`).

    python -m bench.deps                    # newest of everything, full suite (about 10 min on 2 cores)
    python -m bench.deps --tests tests/test_engine.py --keep /tmp/latest-venv
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REQUIREMENTS = REPO / "requirements.txt"
KEEP_PINNED = ("torch",)  # a newer torch from PyPI is a CUDA build of several GB
_REQUIREMENT = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:==\s*([^\s;#]+))?")
_FAILED = re.compile(r"^(FAILED|ERROR) (\S+)")


def direct_requirements(path: Path = REQUIREMENTS) -> dict[str, str]:
    """Package name -> pinned version ('' when unpinned), in file order."""
    pins = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        match = _REQUIREMENT.match(line.strip())
        if match:
            pins[match.group(1)] = match.group(2) or ""
    return pins


def installed_versions(python: Path) -> dict[str, str]:
    listing = subprocess.run(
        [str(python), "-m", "pip", "list", "--format=json", "--disable-pip-version-check"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {_normalise(row["name"]): row["version"] for row in json.loads(listing)}


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def newest_specs(pins: dict[str, str]) -> list[str]:
    """What to install: the kept pins exactly, every other package unpinned and upgraded."""
    return [f"{name}=={version}" if name in KEEP_PINNED and version else name for name, version in pins.items()]


def failed_tests(output: str) -> list[str]:
    return [f"{match.group(1)} {match.group(2)}" for line in output.splitlines() if (match := _FAILED.match(line))]


def summary_line(output: str) -> str:
    lines = [line for line in output.splitlines() if re.search(r"\d+ (passed|failed|error)", line)]
    return lines[-1].strip("= ") if lines else "(pytest printed no summary)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.deps", description=__doc__.splitlines()[0])
    parser.add_argument("--tests", default="tests", help="What pytest runs in the new environment (default: tests).")
    parser.add_argument("--keep", help="Build the environment in this folder and keep it (default: a temporary one).")
    args = parser.parse_args(argv)

    pins = direct_requirements()
    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="lab-latest-"))
    started = time.monotonic()
    print(
        f"building a virtual environment in {folder} with the newest releases of {len(pins)} packages "
        f"(kept at their pin: {', '.join(KEEP_PINNED)})",
        flush=True,
    )
    subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True)
    python = folder / "bin" / "python"
    install = subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--upgrade",
            *newest_specs(pins),
        ],
        capture_output=True,
        text=True,
    )
    if install.returncode != 0:
        print("the newest releases do not install together:\n" + install.stderr[-3000:])
        return 1
    installed = installed_versions(python)
    print(f"installed in {time.monotonic() - started:.0f} s\n")
    print(f"{'package':<24}{'pinned':>14}{'newest':>14}")
    moved = []
    for name, pinned in pins.items():
        newest = installed.get(_normalise(name), "?")
        same = newest.split("+")[0] == pinned  # a local build tag (2.13.0+cpu) is the same release
        mark = "" if same else "  moved" if pinned else "  (unpinned)"
        if pinned and not same:
            moved.append(f"{name} {pinned} -> {newest}")
        print(f"{name:<24}{pinned or '-':>14}{newest:>14}{mark}")

    print(f"\nrunning python -m pytest {args.tests} -q there ...", flush=True)
    tests_started = time.monotonic()
    result = subprocess.run(
        [str(python), "-m", "pytest", args.tests, "-q", "-p", "no:cacheprovider"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    output = result.stdout + result.stderr
    broken = failed_tests(output)
    print(f"tests: {summary_line(output)} ({time.monotonic() - tests_started:.0f} s)")
    print("moved: " + ("; ".join(moved) if moved else "nothing (the pins are the newest releases)"))
    print("broken tests:" + ("".join(f"\n  {test}" for test in broken) if broken else " none"))
    for block in re.findall(r"^E   .+$", output, re.M)[:10]:
        print("  " + block)
    return 0 if result.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
