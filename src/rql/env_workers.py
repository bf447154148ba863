"""The command of an evaluation worker process, ``python -m rql.env_workers``.

The workers themselves (their messages, the loop of a worker process and :class:`Worker`, the main
process's end of one) live in :mod:`rql.evaluation.workers`, beside the pool that starts them; this
module is the name a worker process runs under (what ``ps`` shows) and the old import path of
what it holds. It imports nothing of ``rql`` that imports it back.
"""

from __future__ import annotations

from rql.evaluation.workers import (Worker, pack_play, play_chunk, recv, release_free_memory, send, unpack_play,
                                    worker_main)

__all__ = ["Worker", "pack_play", "play_chunk", "recv", "release_free_memory", "send", "unpack_play", "worker_main"]

if __name__ == "__main__":
    worker_main()
