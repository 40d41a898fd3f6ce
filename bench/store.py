"""CPU cost of the session store per answer, without the server: what one answer writes, C at a time.

Each answer is what a chat turn writes: the question with its session's new run state, then the answer with
the session freed (two `append_message` calls). Reports answers/s and CPU microseconds per answer of this
process (the store adapter's own cost: SQLAlchemy, the driver, our code; MariaDB's CPU is not in it).
Creates and drops its own database. `--profile` prints the top cProfile entries.

    python bench/store.py --store mysql -c 30 -n 3000 [--profile]
    python bench/store.py --store memory -c 30 -n 3000
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import itertools
import pstats
import time
from datetime import UTC, datetime

from dataagent.adapters.memory.repositories import InMemorySessionRepository
from dataagent.adapters.mysql.repositories import MySqlSessionRepository
from dataagent.application.ports import SessionRepository
from dataagent.domain.models import Message, Role, RunState, Session

BENCH_DB = "dataagent_store_bench"
BOUND = 16 * 1024 * 1024  # DATAAGENT_MAX_SESSION_BYTES' default: a chat turn's question is stored within it
IDS = itertools.count()  # message ids, unique across the warm-up and the measured run


async def answers(repo: SessionRepository, sessions: int, total: int, concurrency: int) -> None:
    now = datetime.now(UTC)
    for i in range(sessions):
        await repo.get_or_create_session(Session(f"s{i}", "bench", "", now, now))
    todo = iter(range(total))

    async def user() -> None:
        for n in todo:
            sid, run = f"s{n % sessions}", f"r{n}"
            at = datetime.now(UTC)
            await repo.append_message(Message(f"m{next(IDS)}", sid, Role.USER, "how many orders last week?", at,
                                              run_id=run), RunState(run), BOUND)
            await repo.append_message(Message(f"m{next(IDS)}", sid, Role.ASSISTANT, "x" * 800, at, run_id=run,
                                              metadata={"chunks": 200}), RunState(None))

    await asyncio.gather(*(user() for _ in range(concurrency)))


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--store", choices=("memory", "mysql"), default="mysql")
    p.add_argument("-c", "--concurrency", type=int, default=30, help="answers writing at once (the pool is 30)")
    p.add_argument("-n", "--answers", type=int, default=3000)
    p.add_argument("-s", "--sessions", type=int, default=500)
    p.add_argument("--url", default="mysql://root@127.0.0.1:3306")
    p.add_argument("--profile", action="store_true")
    opts = p.parse_args()
    repo: SessionRepository
    admin = None
    if opts.store == "mysql":
        admin = MySqlSessionRepository.from_url(opts.url + "/")
        async with admin.engine.begin() as conn:
            await conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {BENCH_DB}")
            await conn.exec_driver_sql(f"CREATE DATABASE {BENCH_DB} CHARACTER SET utf8mb4")
        repo = MySqlSessionRepository.from_url(f"{opts.url}/{BENCH_DB}")
    else:
        repo = InMemorySessionRepository()
    await repo.start()
    await answers(repo, opts.sessions, 200, opts.concurrency)  # warm-up: connections, compiled statements
    profile = cProfile.Profile() if opts.profile else None
    wall, cpu = time.perf_counter(), time.process_time()
    if profile:
        profile.enable()
    await answers(repo, opts.sessions, opts.answers, opts.concurrency)
    if profile:
        profile.disable()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(f"{opts.store}: {opts.answers / wall:.0f} answers/s, {cpu / opts.answers * 1e6:.0f} CPU us per answer "
          f"(c={opts.concurrency}, {opts.answers} answers on {opts.sessions} sessions)")
    await repo.close()
    if admin is not None:
        async with admin.engine.begin() as conn:
            await conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {BENCH_DB}")
        await admin.close()
    if profile:
        pstats.Stats(profile).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    asyncio.run(main())
