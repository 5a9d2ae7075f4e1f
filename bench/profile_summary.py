"""Summarise py-spy ``--format raw`` profiles (collapsed stacks) written by ``e2e.py --profile``.

    .venv/bin/python bench/profile_summary.py DIR [--top 25]

For each profile: samples in each library (inclusive: the stack passes through it;
self: the leaf frame is in it), and the functions with the most self and inclusive
samples. Idle samples are not recorded (py-spy's default), so shares are of CPU time.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")

#: path fragment -> the name it is reported under (first match wins)
AREAS = [
    ("/sqlalchemy/", "sqlalchemy"),
    ("/psycopg_pool/", "psycopg"),
    ("/psycopg/", "psycopg"),
    ("/psycopg_binary/", "psycopg"),
    ("/fastapi/", "fastapi"),
    ("/starlette/", "starlette"),
    ("/pydantic_core/", "pydantic"),
    ("/pydantic/", "pydantic"),
    ("/uvicorn/", "uvicorn"),
    ("/anyio/", "anyio"),
    ("/dramatiq/", "dramatiq"),
    ("/redis/", "redis-py"),
    ("/json/", "json"),
    ("/logging/", "logging"),
    ("/uuid.py", "uuid"),
    ("/app/", "jobplane app"),
    ("/workers/", "jobplane workers"),
    ("/outbox/", "jobplane outbox"),
    ("/threading.py", "threading"),
    ("/socket.py", "socket"),
    ("/selectors.py", "selectors"),
    ("/asyncio/", "asyncio"),
    ("/concurrent/", "concurrent"),
]


def area(path: str) -> str:
    for fragment, name in AREAS:
        if fragment in path:
            return name
    if "site-packages" in path:
        return path.split("site-packages/", 1)[1].split("/", 1)[0]
    return "other"


def parse(path: Path) -> list[tuple[list[tuple[str, str]], int]]:
    """(frames root-first as (function label, file), samples) per line."""
    stacks = []
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = []
        for raw in stack.split(";"):
            match = FRAME.match(raw.strip())
            if match:
                file = match["file"]
                label = f"{match['func']} ({short(file)}:{match['line'] or '?'})"
                frames.append((label, file))
            else:
                frames.append((raw.strip(), ""))
        stacks.append((frames, int(count)))
    return stacks


def short(path: str) -> str:
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1]
    for root in ("/app/", "/workers/", "/outbox/"):
        if root in path:
            return root.strip("/") + "/" + path.split(root, 1)[1]
    return path.rsplit("/", 2)[-1] if "/" in path else path


def summarize(path: Path, top: int) -> str:
    stacks = parse(path)
    total = sum(count for _, count in stacks)
    if not total:
        return f"{path.name}: no samples"
    incl_area: Counter[str] = Counter()
    self_area: Counter[str] = Counter()
    incl_func: Counter[str] = Counter()
    self_func: Counter[str] = Counter()
    for frames, count in stacks:
        # Python frames only: py-spy's thread/process labels carry no file.
        frames = [frame for frame in frames if frame[1]]
        if not frames:
            continue
        for name in {area(file) for _, file in frames}:
            incl_area[name] += count
        for label in {label for label, _ in frames}:
            incl_func[label] += count
        self_area[area(frames[-1][1])] += count
        self_func[frames[-1][0]] += count
    out = [f"== {path.stem}: {total} samples"]
    out.append("  by library (inclusive % / self %):")
    for name, count in incl_area.most_common():
        share, own = 100 * count / total, 100 * self_area[name] / total
        out.append(f"    {name:<20} {share:5.1f}  {own:5.1f}")
    out.append(f"  top {top} functions by self samples:")
    for label, count in self_func.most_common(top):
        out.append(f"    {100 * count / total:5.1f}%  {label}")
    out.append(f"  top {top} functions by inclusive samples:")
    for label, count in incl_func.most_common(top):
        out.append(f"    {100 * count / total:5.1f}%  {label}")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    for path in sorted(args.directory.glob("*.folded")):
        print(summarize(path, args.top))
        print()


if __name__ == "__main__":
    main()
