"""Which system libraries Qt's window needs and this machine lacks, and the one command that
installs them on this distribution. Standard library only: ``make demo`` runs this file with the
system Python before it installs anything (``python3 gui/qtlibs.py``), and the launcher asks it
again, with ``ldd`` on Qt's own plugin, when Qt fails to start."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

LDD_TIMEOUT_S = 20

# soname -> (Debian/Ubuntu, Fedora, Arch) package. The libraries Qt's xcb platform plugin loads
# that a minimal or server install often lacks.
PACKAGES: dict[str, tuple[str, str, str]] = {
    "libxcb-cursor.so.0": ("libxcb-cursor0", "xcb-util-cursor", "xcb-util-cursor"),
    "libxcb-icccm.so.4": ("libxcb-icccm4", "xcb-util-wm", "xcb-util-wm"),
    "libxcb-keysyms.so.1": ("libxcb-keysyms1", "xcb-util-keysyms", "xcb-util-keysyms"),
    "libxcb-image.so.0": ("libxcb-image0", "xcb-util-image", "xcb-util-image"),
    "libxcb-render-util.so.0": ("libxcb-render-util0", "xcb-util-renderutil", "xcb-util-renderutil"),
    "libxcb-util.so.1": ("libxcb-util1", "xcb-util", "xcb-util"),
    "libxcb-xkb.so.1": ("libxcb-xkb1", "libxcb", "libxcb"),
    "libxcb-shape.so.0": ("libxcb-shape0", "libxcb", "libxcb"),
    "libxcb-randr.so.0": ("libxcb-randr0", "libxcb", "libxcb"),
    "libX11-xcb.so.1": ("libx11-xcb1", "libX11-xcb", "libx11"),
    "libxkbcommon.so.0": ("libxkbcommon0", "libxkbcommon", "libxkbcommon"),
    "libxkbcommon-x11.so.0": ("libxkbcommon-x11-0", "libxkbcommon-x11", "libxkbcommon-x11"),
    "libEGL.so.1": ("libegl1", "libglvnd-egl", "libglvnd"),
    "libGL.so.1": ("libgl1", "libglvnd-glx", "libglvnd"),
    "libfontconfig.so.1": ("libfontconfig1", "fontconfig", "fontconfig"),
    "libdbus-1.so.3": ("libdbus-1-3", "dbus-libs", "dbus"),
}
INSTALLERS = ("sudo apt-get install -y", "sudo dnf install -y", "sudo pacman -S --needed")


def family(os_release: str) -> int | None:
    """0 Debian/Ubuntu, 1 Fedora/RHEL, 2 Arch, from /etc/os-release's ID and ID_LIKE; None: other."""
    ids = " ".join(m.group(1).strip('"').lower() for m in re.finditer(r"^(?:ID|ID_LIKE)=(.*)$", os_release, re.M))
    for n, names in enumerate((("debian", "ubuntu"), ("fedora", "rhel", "centos"), ("arch",))):
        if any(name in ids.split() for name in names):
            return n
    return None


def not_found(ldd_output: str) -> list[str]:
    """The sonames ``ldd`` reports as ``not found``, in its order, once each."""
    out: list[str] = []
    for m in re.finditer(r"^\s*(\S+)\s+=>\s+not found", ldd_output, re.M):
        if m.group(1) not in out:
            out.append(m.group(1))
    return out


def install_command(missing: list[str], os_release: str) -> str:
    """One line: the command that installs ``missing`` here, or the sonames to look for."""
    fam = family(os_release)
    known = [PACKAGES[s] for s in missing if s in PACKAGES]
    if fam is None or len(known) < len(missing):
        return "install the packages that provide: " + " ".join(missing)
    pkgs = list(dict.fromkeys(p[fam] for p in known))
    return f"{INSTALLERS[fam]} {' '.join(pkgs)}"


def os_release() -> str:
    """The first 10 kB of /etc/os-release, only when it is a regular file (a FIFO would block)."""
    path = Path("/etc/os-release")
    try:
        if not path.resolve().is_file():
            return ""
        with path.open("rb") as f:
            return f.read(10_000).decode("utf-8", "replace")
    except OSError:
        return ""


def ldd_missing(paths: list[Path]) -> list[str]:
    """What ``ldd`` finds missing for ``paths`` (Qt's xcb plugin and its xcb library)."""
    missing: list[str] = []
    for p in paths:
        if not p.is_file():
            continue
        try:
            run = subprocess.run(["ldd", str(p)], capture_output=True, text=True, timeout=LDD_TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired):
            continue
        missing += [s for s in not_found(run.stdout) if s not in missing]
    return missing


def system_missing(sonames: list[str]) -> list[str]:
    """The ``sonames`` the dynamic linker's cache (``ldconfig -p``) does not list: what a fresh
    machine lacks before PySide6 is even installed."""
    try:
        run = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True, timeout=LDD_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired):
        try:
            run = subprocess.run(["/sbin/ldconfig", "-p"], capture_output=True, text=True, timeout=LDD_TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired):
            return []  # cannot tell: Qt's own check speaks when the window starts
    listed = set(re.findall(r"^\s*(\S+)\s+\(", run.stdout, re.M))
    return [s for s in sonames if s not in listed]


def main() -> int:
    """``python3 gui/qtlibs.py``: exit 1 naming the command to run when the window's libraries are missing."""
    if not sys.platform.startswith("linux"):
        return 0
    missing = system_missing(list(PACKAGES))
    if not missing:
        print("Qt's system libraries: all present")
        return 0
    print(f"The app's window needs {len(missing)} system libraries this machine lacks ({', '.join(missing)}).\n"
          f"Install them, then run `make demo` again:\n  {install_command(missing, os_release())}\n"
          "Without a screen, the demo runs headless: .venv/bin/image-triage demo --headless", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
