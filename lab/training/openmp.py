"""Give back the calling thread's idle OpenMP workers before training moves to another thread.

torch's Linux builds run CPU kernels on GNU OpenMP (libgomp) teams: each thread that runs a parallel
kernel gets its own team of worker threads, kept until that thread ends. A notebook's (or the
benchmark's) main thread that loaded a model holds such a team while a job trains in a background
thread, and with two teams alive the same training steps ran 5-11% slower on 2 cores; freeing the
idle team first brought the background thread level with the main thread (bench/README.md, "App vs
CLI", has the figures). The app's script threads end after each rerun, which frees their teams anyway.
"""

from __future__ import annotations

import ctypes
import logging
import sys
from pathlib import Path
from typing import Optional

log = logging.getLogger(__name__)

# omp_pause_resource_kind in OpenMP 5.0: a soft pause frees threads, keeps settings.
_OMP_PAUSE_SOFT = 1


def release_openmp_team() -> bool:
    """Free the calling thread's idle libgomp worker threads; its next parallel kernel starts new
    ones. Returns False where it cannot: torch not loaded, another OpenMP runtime, an old libgomp."""
    if "torch" not in sys.modules:
        return False  # no torch, no parallel kernel yet: no team
    path = loaded_libgomp()
    if path is None:
        return False  # another OpenMP runtime (macOS, Intel builds): its pause acts process-wide; leave it
    try:
        libgomp = ctypes.CDLL(path)  # already loaded: the same handle torch uses
        # libgomp pauses only the calling thread's team, and refuses (non-zero) inside a parallel region.
        return libgomp.omp_pause_resource_all(_OMP_PAUSE_SOFT) == 0
    except (OSError, AttributeError) as exc:  # an old libgomp without OpenMP 5.0 pause
        log.debug("Could not release the OpenMP team: %s", exc)
        return False


def loaded_libgomp() -> Optional[str]:
    """The path of the libgomp this process has loaded, from /proc/self/maps (Linux only)."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return None
    for line in maps.splitlines():
        fields = line.split(maxsplit=5)  # address, perms, offset, device, inode, path (if any)
        if len(fields) == 6 and Path(fields[5]).name.startswith("libgomp"):
            return fields[5]
    return None
