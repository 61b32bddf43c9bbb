"""The ``kontext-bot`` command (DESIGN.md "CLI contract").

Operators see messages, never tracebacks, for the errors they can fix: a bad config
exits 2 naming the key, a bad argument exits 1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import structlog

from bot import __version__
from bot import cli_operator as operator
from bot.chat import platforms as platforms_registry
from bot.chat.platforms import Platform
from bot.config import Settings, effective_config, load_settings, secret_values
from bot.config_check import Problem, problems
from bot.credits.limits import add_options as add_limit_options
from bot.credits.periods import PERIODS
from bot.errors import ConfigError, ProviderUnavailable, UserInputError
from bot.server.logs import configure_logging

if TYPE_CHECKING:
    from bot.jobs.service import KontextService

log = structlog.get_logger("kontext.cli")


EXIT_USAGE = 1
EXIT_CONFIG = 2
EXIT_ADAPTER = 3
EXIT_STORAGE = 5  # the database cannot be reached, is locked, or the disk is full
EXIT_ONLINE = 6  # check-config --online: a service refused a credential or did not answer


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="kontext-bot", description="FLUX.1 Kontext image editing bot")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--debug",
        action="store_true",
        help="show the traceback of a failure (anywhere before the prompt)",
    )
    config_parent = _Parser(add_help=False)
    config_parent.add_argument(
        "--config", help="config file (default: $KONTEXT_CONFIG or ./config.toml)"
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    commands.add_parser(
        "run", parents=[config_parent], help="start every enabled adapter in one process"
    )
    console = commands.add_parser(
        "console",
        parents=[config_parent],
        help="one edit from the terminal",
        description="Edit one image. Options of the /kontext grammar (--ar 16:9, --seed N, "
        "--format jpg, --upsample, --safety N) may follow the prompt.",
    )
    console.add_argument(
        "--image",
        type=Path,
        action="append",
        help="input image (omit for text-to-image); repeat it for several, the first is edited",
    )
    console.add_argument(
        "--demo",
        action="store_true",
        help="use the free offline demo provider (no key; without --image it edits the "
        "sample picture shipped with the bot)",
    )
    console.add_argument("--out", type=Path, help="where to write the result")
    console.add_argument("prompt", nargs="*", help="what to change, with any grammar options")

    check = commands.add_parser(
        "check-config", parents=[config_parent], help="validate and print the effective config"
    )
    check.add_argument("--json", action="store_true", help="print JSON instead of TOML-like text")
    check.add_argument(
        "--online",
        action="store_true",
        help="also check each credential against its service (no image is made)",
    )

    commands.add_parser(
        "migrate", parents=[config_parent], help="apply database migrations and exit"
    )
    backup = commands.add_parser(
        "backup",
        parents=[config_parent],
        help="copy the SQLite database to PATH while the bot runs (PostgreSQL: pg_dump)",
    )
    backup.add_argument("path", type=Path, help="the new file to write")
    provider = commands.add_parser("provider", help="the image-editing provider")
    provider_commands = provider.add_subparsers(dest="provider_command", required=True)
    provider_commands.add_parser(
        "status", parents=[config_parent], help="which provider, and its remaining budget"
    )
    commands.add_parser(
        "healthcheck",
        parents=[config_parent],
        help="exit 0 when the running bot's ops endpoint answers /healthz (Docker HEALTHCHECK)",
    )

    credits = commands.add_parser("credits", help="read and change balances")
    credit_commands = credits.add_subparsers(dest="credits_command", required=True)
    show = credit_commands.add_parser("show", parents=[config_parent], help="show a balance")
    show.add_argument("user", help="platform:workspace:user, e.g. slack:T0123:U0456")
    show.add_argument("--history", type=int, default=10, help="ledger entries to list")
    grant = credit_commands.add_parser("grant", parents=[config_parent], help="add credits")
    grant.add_argument("user", help="platform:workspace:user")
    grant.add_argument("amount", type=int, help="credits to add (negative to take away)")
    grant.add_argument("--note", help="why, kept in the ledger")

    policy = commands.add_parser(
        "policy", help="allowance overrides and pauses per scope (see docs/quotas.md)"
    )
    policy_commands = policy.add_subparsers(dest="policy_command", required=True)
    allowance = policy_commands.add_parser(
        "allowance", parents=[config_parent], help="set or remove a scope's allowance"
    )
    allowance.add_argument("scope", help="e.g. role:discord:9876:777 or workspace:slack:T0123")
    allowance.add_argument("amount", help="credits per period, or 'off' to remove the override")
    allowance.add_argument("--period", choices=PERIODS)
    limits = policy_commands.add_parser(
        "limits",
        parents=[config_parent],
        help="show or change the limits for everyone (over the config, at run time)",
    )
    add_limit_options(limits)
    limits.add_argument(
        "--reset",
        action="append",
        metavar="KEY",
        help="drop a stored limit so the config file's value is in force again "
        "(a limit's name, e.g. budget, or 'all'; may be repeated)",
    )
    models = policy_commands.add_parser(
        "models",
        parents=[config_parent],
        help="allow restricted models ([[models]] restricted = true) in a scope",
    )
    models.add_argument("scope", help="e.g. role:discord:9876:777 or channel:slack:T0123:C045")
    models.add_argument("names", nargs="+", help="model names, or 'off' to allow none")
    for action in ("pause", "resume", "show"):
        sub = policy_commands.add_parser(action, parents=[config_parent], help=f"{action} a scope")
        sub.add_argument("scope", help="e.g. workspace:discord:9876 or channel:slack:T0123:C045")
    return parser


def _print_config(settings: Settings, as_json: bool) -> None:
    data = effective_config(settings)
    if as_json:
        print(json.dumps(data, indent=2, sort_keys=False))
        return
    for section, values in data.items():
        # [[models]] is a list of tables, each printed as TOML writes one.
        tables = values if isinstance(values, list) else [values]
        for table in tables:
            print(f"[[{section}]]" if isinstance(values, list) else f"[{section}]")
            for key, value in table.items():
                print(f"{key} = {json.dumps(value)}")
            print()
    specs = platforms_registry.registered().values()
    on = [spec.name for spec in specs if spec.enabled(settings)]
    off = [spec.name for spec in specs if not spec.enabled(settings)]
    print(f"# platforms this config runs: {', '.join(on)}; not enabled: {', '.join(off) or '-'}")


def _refuse(found: Sequence[Problem]) -> None:
    print(
        f"configuration error: {len(found)} problem{'s' if len(found) > 1 else ''} "
        "(each: key (environment variable): what is wrong; the fix):",
        file=sys.stderr,
    )
    for problem in found:
        print(f"  {problem.line()}", file=sys.stderr)


async def _check_config(settings: Settings, args: argparse.Namespace) -> int:
    """The effective config, the limits in force, then every problem ``run`` would
    refuse (the same ``config_check.problems``); with ``--online`` each credential."""
    _print_config(settings, args.json)
    found = problems(settings)
    try:
        limits = await operator.stored_limits(settings)
    except Exception as exc:
        from bot.startup_errors import describe

        why = describe(exc, settings.storage.url)
        if why is None:
            raise
        # run would stop on it (exit 5): it is one of the problems.
        limits = ["# limits: the database cannot be read (below)"]
        found.append(Problem("storage.url", why, "fix it, then check again"))
    if not args.json:
        for line in limits:
            print(line)
    code = 0
    if found:
        _refuse(found)
        code = EXIT_CONFIG
    if args.online:
        from bot.server.online_check import check_online

        if not await check_online(settings):
            code = code or EXIT_ONLINE
    return code


async def _run(settings: Settings) -> int:
    from bot.app import build_core

    found = problems(settings)
    if found:
        _refuse(found)
        return EXIT_CONFIG

    def enabled_platforms(service: KontextService) -> list[Platform]:
        return [
            platforms_registry.build(spec, settings, service)
            for spec in platforms_registry.registered().values()
            if spec.enabled(settings)
        ]

    core = await build_core(settings, enabled_platforms)
    platforms = list(core.frontends.values())
    for platform in platforms:
        if core.ops is not None and platform.platform != "console":
            core.ops.add_check(platform.platform, platform.ready)
    if [p for p in platforms if p.platform != "console"] == []:
        log.warning(
            "no platform adapter is enabled (slack.enabled, discord.enabled); "
            "the bot only finishes console jobs left unfinished"
        )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        if stop.is_set():
            log.warning("second stop signal: stopping now; unfinished jobs resume on next start")
            core.hurry()
            return
        log.info(
            "stopping: no new requests; running jobs get up to "
            f"{settings.jobs.shutdown_grace_seconds:.0f} s"
        )
        core.stop_accepting()
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal)
    await core.start()
    started: list[Platform] = []
    try:
        for platform in platforms:
            try:
                await platform.start()
            except Exception as exc:  # a wrong token, an unreachable platform
                log.error(
                    "an adapter could not start; stopping",
                    adapter=type(platform).__name__,
                    error=f"{type(exc).__name__}: {exc}",
                )
                return EXIT_ADAPTER
            started.append(platform)
        await stop.wait()
    finally:
        for platform in platforms:
            await platform.stop()
        await core.close(grace=settings.jobs.shutdown_grace_seconds)
    log.info("stopped")
    return 0


def _demo(settings: Settings, images: list[Path] | None) -> tuple[Settings, list[Path]]:
    """``console --demo``: the same config with the demo provider (no key, no fallbacks)
    and, without ``--image``, the sample picture shipped with the bot, copied next to
    the user so the result's default name (``sample-kontext-….png``) lands there too."""
    from bot.providers.demo import sample_image

    provider = settings.provider.model_copy(update={"name": "demo", "fallbacks": []})
    demo = settings.model_copy(update={"provider": provider, "models": []})
    if not images:
        sample = Path.cwd() / "sample.png"
        if not sample.exists():
            sample.write_bytes(sample_image())
        images = [sample]
    return demo, images


def _healthcheck(settings: Settings) -> int:
    import httpx

    ops = settings.ops
    if not ops.enabled:
        print("unhealthy: the ops endpoint is disabled (ops.enabled = false)", file=sys.stderr)
        return 1
    host = "127.0.0.1" if ops.host in {"0.0.0.0", "::", ""} else ops.host  # noqa: S104
    url = f"http://{host}:{ops.port}/healthz"
    try:
        answer = httpx.get(url, timeout=3.0)
    except httpx.HTTPError as exc:
        print(f"unhealthy: {url}: {type(exc).__name__}", file=sys.stderr)
        return 1
    if answer.status_code != 200:
        print(f"unhealthy: {url} answered {answer.status_code}", file=sys.stderr)
        return 1
    print("healthy")
    return 0


def _log_level(command: str, settings: Settings) -> str:
    """The console prints its own progress lines; routine log events would bury them."""
    if command == "console" and settings.log.level == "info":
        return "warning"
    return settings.log.level


_CONSOLE_OWN = {"--image", "--out", "--config"}
_CONSOLE_FLAGS = {"--demo", "-h", "--help"}  # the console's own options without a value


def split_console_args(tokens: Sequence[str]) -> tuple[list[str], list[str]]:
    """Separate the console's own options from the prompt and its grammar options.

    The grammar's flags (``--ar 16:9``) may stand anywhere in the prompt, which argparse
    would take for unknown options of its own; so the console's three options are
    picked out here (and its flags, ``--demo``) and everything else is prompt text for
    the command parser.
    """
    own: list[str] = []
    prompt: list[str] = []
    index = 0
    while index < len(tokens):
        arg = tokens[index]
        name = arg.split("=", 1)[0]
        if arg == "--":
            prompt.extend(tokens[index + 1 :])
            break
        if name in _CONSOLE_OWN or arg in _CONSOLE_FLAGS:
            own.append(arg)
            if "=" not in arg and arg not in _CONSOLE_FLAGS and index + 1 < len(tokens):
                own.append(tokens[index + 1])
                index += 1
        else:
            prompt.append(arg)
        index += 1
    return own, prompt


def _take_debug(tokens: list[str]) -> tuple[list[str], bool]:
    """``--debug`` may stand anywhere before a ``--`` (after the command too)."""
    end = tokens.index("--") if "--" in tokens else len(tokens)
    head = [t for t in tokens[:end] if t != "--debug"]
    return [*head, *tokens[end:]], len(head) != end


def main(argv: Sequence[str] | None = None) -> int:
    tokens, debug = _take_debug(list(sys.argv[1:] if argv is None else argv))
    prompt_tokens: list[str] = []
    if tokens[:1] == ["console"]:
        own, prompt_tokens = split_console_args(tokens[1:])
        tokens = ["console", *own]
    args = build_parser().parse_args(tokens)
    try:
        settings = load_settings(getattr(args, "config", None))
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    configure_logging(
        fmt=settings.log.format,
        level=_log_level(args.command, settings),
        secrets=secret_values(settings),
    )
    try:
        return _dispatch(args, settings, prompt_tokens)
    except Exception as exc:
        from bot.startup_errors import describe

        line = describe(exc, settings.storage.url)
        if line is None or debug:
            raise
        print(f"error: {line} (the traceback: --debug)", file=sys.stderr)
        return EXIT_STORAGE


def _dispatch(args: argparse.Namespace, settings: Settings, prompt_tokens: list[str]) -> int:
    """Run the parsed command; the operator's own mistakes come back as exit codes."""
    try:
        if args.command == "check-config":
            return asyncio.run(_check_config(settings, args))
        if args.command == "provider":
            return asyncio.run(operator.provider_status(settings))
        if args.command == "healthcheck":
            return _healthcheck(settings)
        if args.command == "migrate":
            from bot.storage.database import migrate

            asyncio.run(migrate(settings.storage.url))
            print("database is up to date")
            return 0
        if args.command == "backup":
            from bot.backup import backup_sqlite

            size = backup_sqlite(settings.storage.url, args.path)
            print(f"backed up {size} bytes to {args.path}")
            return 0
        if args.command == "credits":
            return asyncio.run(operator.credits(settings, args))
        if args.command == "policy":
            return asyncio.run(operator.policy(settings, args))
        if args.command == "console":
            run_one = platforms_registry.registered()["console"].run_one
            assert run_one is not None
            text = " ".join([*args.prompt, *prompt_tokens])
            images = args.image
            if args.demo:
                settings, images = _demo(settings, images)
            return asyncio.run(run_one(settings, images, args.out, text))
        if args.command == "run":
            return asyncio.run(_run(settings))
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except UserInputError as exc:
        print(f"error: {exc.user_message}", file=sys.stderr)
        return EXIT_USAGE
    except ProviderUnavailable as exc:
        print(f"error: {exc.user_message}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # Output piped into `head` and friends: stop quietly, as Unix tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    raise AssertionError(f"unhandled command {args.command}")


if __name__ == "__main__":
    sys.exit(main())
