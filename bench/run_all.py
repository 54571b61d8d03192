"""Every benchmark, one after the other (``make bench``). Figures go to docs/performance.md."""

from __future__ import annotations

import asyncio

from bench import enqueue, flush, history, http_enqueue, task_control, write_cost


def main() -> None:
    asyncio.run(flush.main())
    asyncio.run(write_cost.main())
    asyncio.run(history.main())
    asyncio.run(enqueue.main())
    asyncio.run(task_control.main())
    http_enqueue.main()


if __name__ == "__main__":
    main()
