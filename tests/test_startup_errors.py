"""Errors are one line (issue 29): bad environment values, an unreachable or locked
database and an unreachable provider each give one sentence with what to do, through
the real CLI; the traceback only with ``--debug``."""

from __future__ import annotations

import io
import socket
import sqlite3
from pathlib import Path

import httpx

from bot.providers.http import connect_failure
from bot.startup_errors import describe
from tests.fakes.coretoday import FakeCoreToday
from tests.support import cat_png, environment, run


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_a_list_in_the_environment_may_be_comma_separated(
    tmp_path: Path, fake: FakeCoreToday
) -> None:
    env = environment(tmp_path, fake, KONTEXT_CREDITS__ADMINS="slack:T1:U1, discord:9:8")
    result = await run(["check-config"], env, tmp_path)
    assert result.code == 0, result.stderr
    assert 'admins = ["slack:T1:U1", "discord:9:8"]' in result.stdout


async def test_a_broken_list_is_one_line_naming_the_variable(
    tmp_path: Path, fake: FakeCoreToday
) -> None:
    env = environment(tmp_path, fake, KONTEXT_CREDITS__ADMINS='["slack:T1:U1"')
    result = await run(["check-config"], env, tmp_path)
    assert result.code == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("configuration error: KONTEXT_CREDITS__ADMINS:")
    assert "a,b" in line
    env = environment(tmp_path, fake, KONTEXT_PROVIDER__FALLBACKS="bfl")
    result = await run(["check-config"], env, tmp_path)
    assert result.code == 2
    assert "KONTEXT_PROVIDER__FALLBACKS" in result.stderr and "Traceback" not in result.stderr


async def test_an_unreachable_postgresql_is_one_line(tmp_path: Path, fake: FakeCoreToday) -> None:
    url = f"postgresql://bot:hunter2@127.0.0.1:{closed_port()}/kontext"
    env = environment(tmp_path, fake, KONTEXT_STORAGE__URL=url)
    result = await run(["migrate"], env, tmp_path)
    assert result.code == 5
    (line,) = result.stderr.strip().splitlines()
    assert "nothing accepts connections at 127.0.0.1:" in line and "--debug" in line
    assert "hunter2" not in line
    debug = await run(["migrate", "--debug"], env, tmp_path)
    assert debug.code != 0 and "Traceback" in debug.stderr


def test_a_locked_sqlite_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "k.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN EXCLUSIVE")
    other = sqlite3.connect(path, timeout=0)
    try:
        other.execute("INSERT INTO t VALUES (1)")
    except sqlite3.OperationalError as exc:
        line = describe(exc, f"sqlite:///{path}")
    else:  # pragma: no cover - the lock must refuse the write
        raise AssertionError("the exclusive lock did not hold")
    finally:
        other.close()
        holder.close()
    assert line is not None and "is locked by another process" in line and str(path) in line


def test_other_failures_are_not_taken_for_the_databases() -> None:
    assert describe(ValueError("nothing to do with storage"), "sqlite:///k.db") is None


async def test_the_console_names_an_unreachable_provider_without_retry_lines(
    tmp_path: Path, fake: FakeCoreToday
) -> None:
    port = closed_port()
    env = environment(
        tmp_path,
        fake,
        KONTEXT_PROVIDER__BASE_URL=f"http://127.0.0.1:{port}",
        KONTEXT_PROVIDER__MAX_RETRIES="1",
    )
    image = cat_png(tmp_path / "cat.png")
    result = await run(["console", "--image", str(image), "make it a watercolor"], env, tmp_path)
    assert result.code == 3
    assert "stamina" not in result.stderr and "retry_scheduled" not in result.stderr
    assert f"127.0.0.1:{port} refused the connection" in result.stderr
    assert "refunded" in result.stderr


async def test_a_name_that_does_not_resolve_is_named() -> None:
    """httpx's ConnectError carries the resolver's error underneath; the detail names it."""
    try:
        try:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        except socket.gaierror as dns:
            raise httpx.ConnectError("[Errno -2] Name or service not known") from dns
    except httpx.ConnectError as exc:
        detail = connect_failure(exc, "https://api.core.today/v1/predictions")
    assert detail.startswith("cannot resolve api.core.today")


def test_discord_voice_warnings_are_not_shown() -> None:
    import logging

    from bot.server.logs import configure_logging

    stream = io.StringIO()
    configure_logging(stream=stream)
    discord_log = logging.getLogger("discord.client")  # the logger discord.py warns on
    discord_log.warning("PyNaCl is not installed, voice will NOT be supported")
    discord_log.warning("davey is not installed, voice will NOT be supported")
    discord_log.warning("Shard ID None has stopped responding to the gateway.")
    shown = stream.getvalue()
    assert "voice will NOT be supported" not in shown
    assert "has stopped responding" in shown


async def test_backup_copies_the_live_sqlite_database(tmp_path: Path) -> None:
    from tests.test_demo import fresh_machine

    env = fresh_machine(tmp_path)
    assert (await run(["console", "--demo", "sketch"], env, tmp_path)).code == 0
    result = await run(["backup", "backups/k.db"], env, tmp_path)
    assert result.code == 0, result.stderr
    copy = sqlite3.connect(tmp_path / "backups" / "k.db")
    try:
        kinds = sorted(row[0] for row in copy.execute("SELECT kind FROM ledger"))
    finally:
        copy.close()
    assert "reserve" in kinds and "charge" in kinds  # the demo edit, charged
    again = await run(["backup", "backups/k.db"], env, tmp_path)
    assert again.code == 1 and "nothing is overwritten" in again.stderr
    env["KONTEXT_STORAGE__URL"] = "postgresql://kontext@127.0.0.1:9/kontext"
    postgres = await run(["backup", "x.dump"], env, tmp_path)
    assert postgres.code == 1 and "docker compose exec -T postgres pg_dump" in postgres.stderr


def test_a_full_disk_is_named() -> None:
    import errno

    try:
        raise OSError(errno.ENOSPC, "No space left on device")
    except OSError as exc:
        line = describe(exc, "sqlite:///kontext.db")
    assert line is not None and line.startswith("the disk is full")
