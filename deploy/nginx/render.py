"""Render deploy/nginx/fastreg.conf: fill in its `{{NAME}}` placeholders (Python stdlib only).

    python3 deploy/nginx/render.py --server-name registry.example.com \
        --cert /etc/ssl/registry/fullchain.pem --key /etc/ssl/registry/privkey.pem \
        [--listen 443] [--upstream 127.0.0.1:5000] [--output /etc/nginx/conf.d/fastreg.conf]

Values are checked to be single nginx words (no whitespace, `;`, braces or quotes), so a typo
cannot splice directives into the file; a placeholder left unfilled is an error.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parent / "fastreg.conf"
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Z_]+)\s*\}\}")
_WORD = re.compile(r"[^\s;{}\"'#\\]+")


class RenderError(ValueError):
    pass


def render(template: str, values: Mapping[str, str]) -> str:
    """``template`` with every ``{{NAME}}`` replaced by ``values[NAME]``."""
    for name, value in values.items():
        if not _WORD.fullmatch(value):
            raise RenderError(f"{name}: {value!r} is not a single nginx word")
    missing = sorted({m.group(1) for m in _PLACEHOLDER.finditer(template)} - set(values))
    if missing:
        raise RenderError(f"no value for {', '.join(missing)}")
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--server-name", required=True, help="the registry's DNS name")
    parser.add_argument("--cert", required=True, help="PEM certificate chain")
    parser.add_argument("--key", required=True, help="PEM private key")
    parser.add_argument("--listen", default="443", help="port or address:port (default 443)")
    parser.add_argument(
        "--upstream", default="127.0.0.1:5000", help="fastreg's http.addr (default 127.0.0.1:5000)"
    )
    parser.add_argument("--template", type=Path, default=TEMPLATE, help=argparse.SUPPRESS)
    parser.add_argument("--output", type=Path, help="write here instead of stdout")
    args = parser.parse_args(argv)
    values = {
        "SERVER_NAME": args.server_name,
        "CERT": args.cert,
        "KEY": args.key,
        "LISTEN": args.listen,
        "UPSTREAM": args.upstream,
    }
    try:
        text = render(args.template.read_text(encoding="utf-8"), values)
    except (OSError, RenderError) as exc:
        print(f"render.py: {exc}", file=sys.stderr)
        return 2
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
