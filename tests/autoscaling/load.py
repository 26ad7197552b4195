"""A bounded closed-loop load: N clients, each sending its next request when the last answers,
until the time or the request budget runs out. Run as its own process so the load's CPU never
competes with the test's event loop; prints a JSON summary (status counts) on exit.

    python load.py --url http://127.0.0.1:8080/predictions/m --concurrency 8 --duration 10
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import sys
import time

import aiohttp


async def _client(
    session: aiohttp.ClientSession,
    *,
    url: str,
    deadline: float,
    budget: collections.Counter[str],
    statuses: collections.Counter[int],
) -> None:
    while time.monotonic() < deadline and budget["left"] > 0:
        budget["left"] -= 1
        try:
            async with session.post(url, json={"x": 1}) as response:
                await response.read()
                statuses[response.status] += 1
        except aiohttp.ClientError:
            statuses[0] += 1


async def run(
    *, urls: list[str], concurrency: int, duration_s: float, max_requests: int
) -> dict[str, int]:
    deadline = time.monotonic() + duration_s
    budget: collections.Counter[str] = collections.Counter(left=max_requests)
    statuses: collections.Counter[int] = collections.Counter()
    timeout = aiohttp.ClientTimeout(total=duration_s + 30)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        await asyncio.gather(
            *(
                _client(
                    session,
                    url=urls[index % len(urls)],
                    deadline=deadline,
                    budget=budget,
                    statuses=statuses,
                )
                for index in range(concurrency)
            )
        )
    return {str(status): count for status, count in sorted(statuses.items())}


def main() -> int:
    parser = argparse.ArgumentParser(description="bounded closed-loop HTTP load")
    parser.add_argument("--url", action="append", required=True, help="repeat to spread clients")
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--duration", type=float, required=True, help="seconds")
    parser.add_argument("--max-requests", type=int, default=10_000)
    args = parser.parse_args()
    summary = asyncio.run(
        run(
            urls=args.url,
            concurrency=args.concurrency,
            duration_s=args.duration,
            max_requests=args.max_requests,
        )
    )
    json.dump(summary, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
