"""The ``distilld`` command line.

``run`` is the Kafka daemon, ``check-config`` validates its configuration;
``reduce`` and ``evaluate`` run the engine over a file; ``demo`` and ``bench``
run it (and the engine) on generated streams.
"""

from __future__ import annotations

import _thread
import argparse
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from distilld import __version__

if TYPE_CHECKING:
    from distilld.settings import EngineSettings, Settings

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """The ``distilld`` command; a reader that stops early (``| head``) ends it quietly, as it ends
    other command-line tools: no traceback, no "[Errno 32] Broken pipe"."""
    try:
        return _main(argv)
    except BrokenPipeError:
        # what is still buffered for the closed pipe would fail again at exit: send it nowhere
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def _main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="distilld", description="Forward a representative share of a stream.")
    parser.add_argument("--version", action="version", version=f"distilld {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, text in (
        ("run", "run the Kafka daemon"),
        ("check-config", "validate a configuration and print it with secrets masked"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("--config", "-c", help="YAML file (settings may also come from DISTILLD_* variables)")
        p.add_argument("--preset", help="a shipped configuration under the file's: userale")
        p.add_argument(
            "--log-level",
            default="INFO",
            choices=["DEBUG", "INFO", "WARNING", "ERROR"],
            help="the least level logged (default: INFO)",
        )
    r = sub.add_parser("reduce", help="reduce a CSV, NDJSON, JSON-array or Avro file with the daemon's engine")
    r.add_argument("input", help="file to read (format from the extension, or --format), - for stdin")
    r.add_argument("-o", "--output", required=True, help="file to write, - for stdout; a distilld_weight is added")
    r.add_argument("--config", "-c", help="the daemon's YAML file (its kafka section is not needed)")
    r.add_argument("--preset", help="a shipped configuration under the file's: userale")
    r.add_argument("--format", choices=["csv", "ndjson", "json", "avro"], help="input format")
    r.add_argument("--output-format", choices=["csv", "ndjson", "json", "avro"], help="output format")
    r.add_argument("--batch", type=int, help="records per batch (default 10,000)")
    r.add_argument("--quiet", "-q", action="store_true", help="no progress line")
    e = sub.add_parser("evaluate", help="distilld next to random sampling on a file: a table, plots, index.html")
    e.add_argument("input", help="file to read (format from the extension, or --format), - for stdin")
    e.add_argument("--report", required=True, help="folder for index.html, a PNG per feature and ratios.json")
    e.add_argument("--config", "-c", help="the daemon's YAML file (its kafka section is not needed)")
    e.add_argument("--preset", help="a shipped configuration under the file's: userale")
    e.add_argument("--format", choices=["csv", "ndjson", "json", "avro"], help="input format")
    g = sub.add_parser("sample", help="write a generated stream to a file, to try reduce and evaluate on")
    g.add_argument("stream", choices=["people", "drifting_people", "clickstream"], help="which stream")
    g.add_argument("-o", "--output", required=True, help="a .csv, .ndjson or .json file")
    g.add_argument("--records", type=int, default=50_000, help="how many (100 a second of event time 'ts')")
    k = sub.add_parser("broker", help="the embedded Kafka-protocol broker (memory only) to try distilld run on")
    k.add_argument("--port", type=int, default=9092, help="port on 127.0.0.1")
    sub.add_parser("demo", help="distilld next to random sampling on a generated stream", add_help=False)
    sub.add_parser("bench", help="engine throughput and representativeness figures", add_help=False)
    args, rest = parser.parse_known_args(argv)
    if args.command in ("run", "check-config"):
        if rest:
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
        return _daemon(args.command, args.config, args.log_level, args.preset)
    if args.command in ("reduce", "evaluate"):
        if rest:
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
        return _files(args)
    if args.command in ("sample", "broker"):
        if rest:
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
        from distilld.tryout import broker, sample

        return sample(args.stream, args.output, args.records) if args.command == "sample" else broker(args.port)
    if args.command == "demo":
        from distilld.demo import main as demo

        return demo(rest)
    if args.command == "bench":
        from distilld.bench.__main__ import main as bench

        bench(rest, prog="distilld bench")
        return 0
    parser.print_help()
    return 2


class _Stopped(KeyboardInterrupt):  # not an Exception: no `except Exception` on the way takes it for an error
    """SIGTERM or SIGINT (Ctrl-C) during ``reduce`` or ``evaluate``."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@contextmanager
def _stoppable() -> Iterator[None]:
    """SIGTERM and SIGINT raise :class:`_Stopped` meanwhile, so that ``reduce`` removes its partial output
    on the way out (SIGTERM would end the process on the spot, SIGINT with a traceback)."""
    if threading.current_thread() is not threading.main_thread():  # only the main thread takes signals
        yield
        return

    previous_hook = sys.unraisablehook
    lock = threading.Lock()
    active = [True]

    def stop(signum: int, frame: object) -> None:
        # a signal given again (below) that lands once the command is over, in the cleanup here, is not raised
        # there: it would leave the handlers and the hook in place, and the work it would stop is done
        if active[0]:
            raise _Stopped(signum)

    def resend(signum: int) -> None:
        with lock:
            if active[0]:
                _thread.interrupt_main(signal.Signals(signum))

    def again(unraisable: Any) -> None:
        # A handler that runs inside a C callback (numba compiling the engine calls back into Python
        # through ctypes) raises where nothing can take the exception: it is printed and dropped, and the
        # run went on to its end, exit code 0, the output in place. The signal is given again instead,
        # from another thread once this hook has returned (given here, it would be handled, and dropped,
        # in the hook itself), until the main thread takes it in Python code.
        if not isinstance(unraisable.exc_value, _Stopped):
            previous_hook(unraisable)
            return
        signum = unraisable.exc_value.signum
        for _ in range(3):
            try:
                timer = threading.Timer(0.01, resend, (signum,))
                timer.daemon = True
                timer.start()
                return
            except _Stopped as again_stopped:  # the signal given again landed here, in the hook: give it again
                signum = again_stopped.signum

    # a signal ignored (a shell's background job ignores SIGINT) stays ignored
    sigs = [sig for sig in (signal.SIGTERM, signal.SIGINT) if signal.getsignal(sig) is not signal.SIG_IGN]
    before = {sig: signal.signal(sig, stop) for sig in sigs}
    sys.unraisablehook = again
    try:
        yield
    finally:
        with lock:
            active[0] = False
        sys.unraisablehook = previous_hook
        for sig, handler in before.items():
            signal.signal(sig, handler)


class _CommandFormatter(logging.Formatter):
    """The engine's log lines (an event time it could not use, ...) as the command's own warnings:
    ``distilld reduce: warning: ...``, not a bare message among the command's lines."""

    def __init__(self, command: str) -> None:
        super().__init__()
        self.command = command

    def format(self, record: logging.LogRecord) -> str:
        return f"distilld {self.command}: {record.levelname.lower()}: {record.getMessage()}"


def _files(args: argparse.Namespace) -> int:
    """``reduce`` and ``evaluate``: the engine over a file; interrupted, a line and 128 + the signal."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.WARNING)
    handler.setFormatter(_CommandFormatter(args.command))
    logger = logging.getLogger("distilld")
    logger.addHandler(handler)
    try:
        with _stoppable():
            return _run_files(args)
    except _Stopped as e:
        print(f"distilld {args.command}: interrupted", file=sys.stderr)
        return 128 + e.signum
    finally:
        logger.removeHandler(handler)


def _run_files(args: argparse.Namespace) -> int:
    from distilld.features import FeatureConfigError
    from distilld.files.formats import FileFormatError
    from distilld.settings import ConfigError, EngineSettings, load_model

    try:
        settings = load_model(EngineSettings, args.config, preset=args.preset)
        _warn_unknown_env()
        if args.command == "evaluate":
            from distilld.files.evaluate import evaluate_file

            result = evaluate_file(args.input, settings, args.report, args.format)
            print(result.table())
            if result.filtered():
                print(f"distilld evaluate: {result.filtered()}", file=sys.stderr)
            for line in result.warnings():
                print(f"distilld evaluate: warning: {line}", file=sys.stderr)
            if not result.plots:
                from distilld.files.evaluate import PLOTS_SKIPPED

                print(f"distilld evaluate: {PLOTS_SKIPPED}", file=sys.stderr)
            print(f"report: {Path(args.report) / 'index.html'}", file=sys.stderr)
            return 0
        from distilld.files.reduce import BATCH, reduce_file

        stats = reduce_file(
            args.input, args.output, settings, args.format, args.output_format,
            BATCH if args.batch is None else args.batch, progress=False if args.quiet else None,
        )  # fmt: skip
    except (ConfigError, FeatureConfigError) as e:
        print(f"distilld: invalid configuration{_where(args.config)}:", file=sys.stderr)
        for line in str(e).splitlines():
            print(f"  {line}", file=sys.stderr)
        if not args.config and not _env():
            print(f"  ({_NO_CONFIG_NOTE})", file=sys.stderr)
        return 1
    except BrokenPipeError:
        raise
    except (FileFormatError, OSError) as e:
        print(f"distilld {args.command}: {_os_error(e)}", file=sys.stderr)
        return 1
    except Exception as e:  # a fault of ours the input found: a line, not a traceback (reduce removed its output)
        print(f"distilld {args.command}: {args.input}: internal error: {type(e).__name__}: {e} (please report)",
              file=sys.stderr)  # fmt: skip
        if sys.flags.dev_mode:  # python -X dev: where, for the report (a DISTILLD_ variable would be a setting)
            import traceback

            traceback.print_exc()
        return 1
    print(stats.summary(), file=sys.stderr)
    for line in stats.warnings():
        print(f"distilld reduce: warning: {line}", file=sys.stderr)
    return 0


def _os_error(e: Exception) -> str:
    """An error for the command line: an OSError as "FILE: reason", not Python's "[Errno 2] ...: 'FILE'"."""
    if isinstance(e, OSError) and e.filename is not None and e.strerror:
        return f"{e.filename}: {e.strerror}"
    return str(e)


def _daemon(command: str, config: str | None, log_level: str, preset: str | None = None) -> int:
    from distilld.settings import ConfigError, load_settings, masked

    early: list[int] = []  # a stop asked for while starting up is honoured once the loop runs
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: early.append(signum))

    from distilld.features import FeatureConfigError

    try:
        settings = load_settings(config, preset=preset)
        size = _state_size(settings)  # builds the graders: a custom function that does not import is an error
    except (ConfigError, FeatureConfigError) as e:
        lines = str(e).splitlines()
        # no kafka section but features: a file for reduce and evaluate, where the missing section is
        # not an error and the rest are (with neither, say both are missing)
        files_only = command == "check-config" and _NO_KAFKA in lines and _NO_FEATURES not in lines
        if files_only:
            lines.remove(_NO_KAFKA)
            if not lines:
                try:
                    return _files_only(config, preset)
                except (ConfigError, FeatureConfigError) as inner:
                    lines = str(inner).splitlines()
        print(f"distilld: invalid configuration{_where(config)}:", file=sys.stderr)
        for line in lines:
            print(f"  {line}", file=sys.stderr)
        if files_only:
            print(f"  ({_NO_KAFKA_NOTE})", file=sys.stderr)
        if not config and not _env():
            print(f"  ({_NO_CONFIG_NOTE})", file=sys.stderr)
        return 1
    _warn_unknown_env()
    from distilld.daemon.clients import error_text, ignored_settings

    ignored = ignored_settings(settings)
    if command == "check-config":
        for line in ignored:
            print(f"distilld: warning: {line}", file=sys.stderr)
        print(json.dumps(_as_run(settings, masked(settings)), indent=2))
        print(size, file=sys.stderr)
        return 0
    logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for line in ignored:
        logging.getLogger("distilld").warning("%s", line)
    from confluent_kafka import KafkaException

    from distilld.daemon.loop import Daemon

    try:
        daemon = Daemon(settings)
    except OSError as e:  # the metrics port is taken, or metrics.host is not an address of this host
        m = settings.metrics
        print(f"distilld: cannot serve metrics on {m.host}:{m.port}: {e.strerror or e}", file=sys.stderr)
        return 1
    except KafkaException as e:  # what the settings' own checks of the clients missed (check-config passed)
        print(f"distilld: cannot create the Kafka clients: {error_text(e)}", file=sys.stderr)
        return 1
    daemon.install_signal_handlers()
    if early:
        logging.getLogger("distilld").info("stop requested while starting: stopping")
        daemon.request_stop()
    return daemon.run()


def _as_run(settings: Settings, shown: dict[str, Any]) -> dict[str, Any]:
    """check-config's printed ``kafka.consumer`` and ``kafka.producer`` as the daemon's clients take them: a
    setting distilld keeps (the ones ignored_settings names) shows distilld's value, not the one ignored."""
    from distilld.daemon.clients import kept_settings

    for section, key, _, _, kept in kept_settings(settings):
        shown["kafka"][section][key] = kept
    return shown


def _env() -> bool:
    return any(k.upper().startswith("DISTILLD_") for k in os.environ)


def _where(config: str | None) -> str:
    """Where settings came from, for an error: the file, the environment, or both."""
    where = " or ".join(([config] if config else []) + (["the DISTILLD_* environment"] if _env() else []))
    return f" in {where}" if where else ""


_NO_CONFIG_NOTE = "no --config given, and no DISTILLD_* variables: see config/people.yaml"
_NO_KAFKA = "kafka: Field required"
_NO_FEATURES = "features: Field required"
_NO_KAFKA_NOTE = "no kafka section: not an error for distilld reduce and evaluate; distilld run needs one"


def _files_only(config: str | None, preset: str | None) -> int:
    """check-config on a configuration without a ``kafka`` section: valid for the
    file tools (``reduce``, ``evaluate``) if the rest is; ``run`` needs the section.
    Raises ConfigError or FeatureConfigError when the rest is not valid."""
    from distilld.settings import EngineSettings, load_model

    settings = load_model(EngineSettings, config, preset=preset)
    size = _state_size(settings)
    _warn_unknown_env()
    print(json.dumps(settings.model_dump(mode="json"), indent=2))
    print(size, file=sys.stderr)
    print("no kafka section: valid for distilld reduce and evaluate; distilld run needs one", file=sys.stderr)
    return 0


def _state_size(settings: EngineSettings) -> str:
    """What the configuration costs in memory: windows are fixed by it, not by traffic."""
    from distilld.daemon.memory import windows_size
    from distilld.features import build_graders
    from distilld.processor import DistilledProcessor

    r = settings.reducer
    per_key = DistilledProcessor(
        build_graders(settings.features), r.window_seconds, r.rate, panes=r.panes
    ).bytes_per_key
    process = "plus ~190 MB for the idle process and up to ~250 MB of batches and client queues"
    return f"{windows_size(per_key, r.max_keys)} ({process})"


def _warn_unknown_env() -> None:
    from distilld.settings import unknown_env

    for name in unknown_env():
        hint = "DISTILLD_" + name.upper().removeprefix("DISTILLD_").replace("_", "__", 1)
        note = f"levels are joined by '__': {hint}?"
        print(f"distilld: warning: {name} names no setting and is ignored ({note})", file=sys.stderr)


if __name__ == "__main__":
    raise SystemExit(main())
