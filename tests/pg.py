"""A throwaway PostgreSQL cluster for the storage tests, started by the tests themselves.

The server binaries come from the machine, or are installed with apt when the tests
run as root on a machine without them (CI on a fresh machine). ``initdb`` refuses to
run as root, so the cluster belongs to the ``postgres`` system user (or to the current
user when not root). It listens on 127.0.0.1 on a free port with trust authentication
and lives in a temporary directory removed at the end of the session.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

INSTALL_TIMEOUT = 600


@dataclass
class Cluster:
    directory: Path
    port: int
    bin_dir: Path
    user: str

    def url(self, database: str) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def stop(self) -> None:
        _run_as_owner(
            [
                str(self.bin_dir / "pg_ctl"),
                "-D",
                str(self.directory / "data"),
                "-m",
                "immediate",
                "stop",
            ],
            check=False,
        )
        shutil.rmtree(self.directory, ignore_errors=True)


class ClusterUnavailable(Exception):
    """Why no cluster could be started (the tests skip with this reason, loudly)."""


def _bin_dir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


def _install() -> None:
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise ClusterUnavailable(
            "PostgreSQL server binaries are missing and cannot be installed here "
            "(not root, or no apt-get): install the 'postgresql' package"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update"], ["apt-get", "install", "-y", "postgresql"]):
        result = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=INSTALL_TIMEOUT, check=False
        )
        if result.returncode != 0:
            raise ClusterUnavailable(f"{' '.join(command)} failed: {result.stderr[-500:]}")


def _owner() -> str:
    return "postgres" if os.geteuid() == 0 else os.environ.get("USER", "postgres")


def _run_as_owner(command: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    if os.geteuid() == 0:
        command = ["runuser", "-u", "postgres", "--", *command]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    if check and result.returncode != 0:
        raise ClusterUnavailable(f"{' '.join(command)} failed: {result.stderr[-500:]}")
    return result


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_cluster() -> Cluster:
    bin_dir = _bin_dir()
    if bin_dir is None:
        _install()
        bin_dir = _bin_dir()
        if bin_dir is None:
            raise ClusterUnavailable("apt installed postgresql but no initdb was found")
    if (
        os.geteuid() == 0
        and subprocess.run(["id", "postgres"], capture_output=True, check=False).returncode != 0
    ):
        raise ClusterUnavailable("running as root but there is no 'postgres' user for initdb")
    directory = Path(tempfile.mkdtemp(prefix="kontext-pg-"))
    directory.chmod(0o755)
    if os.geteuid() == 0:
        shutil.chown(directory, "postgres", "postgres")
    data = directory / "data"
    _run_as_owner(
        [
            str(bin_dir / "initdb"),
            "-D",
            str(data),
            "-A",
            "trust",
            "-U",
            _owner(),
            "-E",
            "UTF8",
            "--no-sync",
        ]
    )
    port = _free_port()
    options = f"-p {port} -c listen_addresses=127.0.0.1 -k {directory} -c fsync=off"
    _run_as_owner(
        [
            str(bin_dir / "pg_ctl"),
            "-D",
            str(data),
            "-o",
            options,
            "-l",
            str(directory / "log"),
            "-w",
            "-t",
            "60",
            "start",
        ]
    )
    return Cluster(directory, port, bin_dir, _owner())
