"""``coreline-verify BUNDLE [--witness CHECKPOINT_FILE]... [--key VERIFIER_KEY]``

Exit status 0 when everything verifies, 1 naming the first failure, 2 for a usage
error (including a file that cannot be read).
"""

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from coreline_verify.errors import VerifyError
from coreline_verify.header import Witness
from coreline_verify.note import NoteError, parse_verifier_key
from coreline_verify.verify import verify_file

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="coreline-verify",
        description="Verify a Coreline evidence bundle (coreline-evidence/v1) offline.",
    )
    parser.add_argument("bundle", type=Path, metavar="BUNDLE")
    parser.add_argument(
        "--witness",
        type=Path,
        action="append",
        default=[],
        metavar="CHECKPOINT_FILE",
        help="a signed checkpoint you kept; it must be consistent with the bundle's",
    )
    parser.add_argument(
        "--key",
        metavar="VERIFIER_KEY",
        help="the log's verifier key (name+id+key) you pinned; overrides the bundle's",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        metavar="N",
        help="worker processes checking event bytes (default: the cores, for large bundles)",
    )
    parser.add_argument(
        "--require-seals",
        action="store_true",
        help="fail a device stream that no registered key seals",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        key = None if args.key is None else parse_verifier_key(args.key)
    except NoteError as error:
        parser.error(f"--key: {error}")
    witnesses = []
    for path in args.witness:
        try:
            witnesses.append(Witness(str(path), path.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError) as error:
            parser.error(f"--witness {path}: {error}")
    if not args.bundle.is_file():
        parser.error(f"{args.bundle}: no such file")
    try:
        verdict = verify_file(
            args.bundle,
            key=key,
            witnesses=witnesses,
            require_seals=args.require_seals,
            emit=print,
            jobs=args.jobs,
        )
    except VerifyError as error:
        print(f"FAILED: {error}", file=sys.stderr)
        return EXIT_FAILED
    except OSError as error:
        print(f"coreline-verify: {args.bundle}: {error}", file=sys.stderr)
        return EXIT_USAGE
    checkpoint = verdict.checkpoint
    print(
        f"OK: {verdict.streams} streams, {verdict.events} events, all in checkpoint "
        f"{checkpoint.origin} size {checkpoint.size}; "
        f"{verdict.witnessed} witnessed checkpoints consistent with it"
    )
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
